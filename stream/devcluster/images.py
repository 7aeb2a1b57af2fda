"""Build the container images the dev cluster and the tests run, without a registry.

No container registry is reachable on the project's machines, so images are made
from what the package registries serve:

* a Debian bookworm base made with ``debootstrap --variant=minbase`` (JRE, redis-server)
  and ``docker import``;
* ``streaminfer/kafka``: the base plus Apache Kafka jars resolved from Maven Central;
* ``streaminfer/redis``: the base running Debian's redis-server;
* ``streaminfer/mirrormaker``: the base plus MirrorMaker 2 (connect-mirror) jars and our
  watchdog (``compose/mirrormaker/WatchedMirrorMaker.java``, compiled here with the
  machine's JDK), built only when two regions are asked for.

Every image carries a label with the hash of its recipe; a build whose recipe is
unchanged is skipped, so a cached rebuild takes about a second. Image names are
settings: with any other name (``apache/kafka:4.1.0``, ``redis:7``) nothing is built
and Docker pulls or uses that image as usual.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from stream.devcluster.progress import say, step
from stream.exceptions import InfrastructureError

KAFKA_VERSION = "4.4.0"
DEFAULT_KAFKA_IMAGE = f"streaminfer/kafka:{KAFKA_VERSION}"
DEFAULT_REDIS_IMAGE = "streaminfer/redis:7"
MIRRORMAKER_VERSION = "4.3.1"  # connect-mirror 4.4.0 is not on Maven Central (yet)
DEFAULT_MIRRORMAKER_IMAGE = f"streaminfer/mirrormaker:{MIRRORMAKER_VERSION}"
RECIPE_LABEL = "io.streaminfer.recipe"
DEBIAN_MIRROR = os.environ.get("STREAMINFER_DEBIAN_MIRROR", "http://deb.debian.org/debian")


def compose_dir() -> Path:
    """The repository's ``compose/`` folder (Dockerfiles, pom, entrypoints)."""
    override = os.environ.get("STREAMINFER_COMPOSE_DIR")
    path = Path(override) if override else Path(__file__).resolve().parents[2] / "compose"
    if not (path / "kafka" / "Dockerfile").exists():
        raise InfrastructureError(
            f"cannot find the image recipes in {path}; run from a streaminfer checkout "
            "or set STREAMINFER_COMPOSE_DIR to its compose/ folder"
        )
    return path


def cache_dir() -> Path:
    """Where downloaded .debs and Kafka jars are kept between builds."""
    root = Path(os.environ.get("STREAMINFER_CACHE_DIR", Path.home() / ".cache" / "streaminfer"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def _hash_files(*paths: Path, extra: str = "") -> str:
    digest = hashlib.sha256(extra.encode())
    for path in paths:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _docker(*args: str, capture: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=capture, text=True, check=False, timeout=1800
    )


def _image_label(image: str) -> str | None:
    """The recipe label of a local image, '' when unlabelled, None when absent."""
    result = _docker("image", "inspect", "--format", f'{{{{index .Config.Labels "{RECIPE_LABEL}"}}}}',
                     image)
    if result.returncode != 0:
        return None
    value = result.stdout.strip()
    return "" if value in ("", "<no value>") else value


def _base_packages(kind: str) -> dict[str, str | None]:
    """``compose/<kind>/packages.txt``: package name -> pinned version (``name=version``),
    or None where no version is pinned."""
    lines = (compose_dir() / kind / "packages.txt").read_text().splitlines()
    out: dict[str, str | None] = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("=")
            out[name.strip()] = version.strip() or None
    return out


def installed_versions(rootfs: Path) -> dict[str, str]:
    """Package -> version of what dpkg installed in ``rootfs`` (its status file)."""
    out: dict[str, str] = {}
    name = version = ""
    status = (rootfs / "var" / "lib" / "dpkg" / "status").read_text(errors="replace")
    for line in [*status.splitlines(), ""]:
        if line.startswith("Package: "):
            name = line.split(": ", 1)[1].strip()
        elif line.startswith("Version: "):
            version = line.split(": ", 1)[1].strip()
        elif not line.strip() and name:
            out[name], name, version = version, "", ""
    return out


def pin_problems(pins: dict[str, str | None], installed: dict[str, str]) -> list[str]:
    """Pinned packages that Debian served in another version (or not at all)."""
    return [f"{name}: pinned {want}, Debian served {installed.get(name, 'nothing')}"
            for name, want in pins.items() if want is not None and installed.get(name) != want]


def base_image_name(kind: str = "base") -> str:
    """A base image's tag: changes whenever ``compose/<kind>/packages.txt`` changes. The
    JVM images share ``base``; the worker image has its own (Python, no JRE)."""
    repo = "streaminfer/base" if kind == "base" else f"streaminfer/{kind}-base"
    return f"{repo}:bookworm-{_hash_files(compose_dir() / kind / 'packages.txt')}"


def ensure_base_image(kind: str = "base") -> str:
    """Build a Debian base image with debootstrap (the packages listed in
    ``compose/<kind>/packages.txt``) unless it exists."""
    name = base_image_name(kind)
    if _image_label(name) is not None:
        return name
    if shutil.which("debootstrap") is None:
        if os.geteuid() != 0:
            raise InfrastructureError(
                "building the base image needs debootstrap and root: run as root, or set "
                "STREAMINFER_KAFKA_IMAGE / STREAMINFER_REDIS_IMAGE to images you can pull"
            )
        from stream.devcluster.engine import _apt_install

        _apt_install(["debootstrap"])
    if os.geteuid() != 0:
        raise InfrastructureError("debootstrap needs root: run `streaminfer dev images` as root")
    pins = _base_packages(kind)
    debs = cache_dir() / "debs"
    debs.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rootfs-", dir=cache_dir()) as tmp:
        rootfs = Path(tmp) / "rootfs"
        with step(f"debootstrap bookworm into a new base image {name} (first time: ~1-2 min)"):
            result = subprocess.run(
                ["debootstrap", "--variant=minbase", f"--cache-dir={debs}",
                 f"--include={','.join(pins)}", "bookworm", str(rootfs),
                 DEBIAN_MIRROR],
                capture_output=True, text=True, check=False,
            )
            if result.returncode != 0:
                tail = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
                raise InfrastructureError(
                    f"debootstrap failed (exit {result.returncode}); check that {DEBIAN_MIRROR} "
                    f"is reachable or set STREAMINFER_DEBIAN_MIRROR:\n{tail}"
                )
            drift = pin_problems(pins, installed_versions(rootfs))
            if drift:
                raise InfrastructureError(
                    f"the Debian mirror serves other versions than compose/{kind}/packages.txt "
                    f"pins ({'; '.join(drift)}): a Debian point release replaced them. Review "
                    f"the changes, then set the served versions in compose/{kind}/packages.txt "
                    "(that changes the base image's tag) and run the command again")
            for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc",
                         "usr/share/man"):
                shutil.rmtree(rootfs / junk, ignore_errors=True)
        with step(f"importing {name} into Docker"):
            tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
            imp = subprocess.run(
                ["docker", "import",
                 "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                 "--change", "ENV LANG=C.UTF-8",
                 "--change", f"LABEL {RECIPE_LABEL}={name}",
                 "-", name],
                stdin=tar.stdout, capture_output=True, text=True, check=False,
            )
            tar.wait()
            if imp.returncode != 0:
                raise InfrastructureError(f"docker import failed: {imp.stderr.strip()}")
    return name


def _kafka_jars() -> Path:
    """Resolve the Kafka runtime jars from Maven Central into the cache (once per pom)."""
    return _jars("kafka", f"Apache Kafka {KAFKA_VERSION}")


def _jars(kind: str, what: str, properties: dict[str, str] | None = None) -> Path:
    """Resolve ``compose/<kind>/pom.xml``'s runtime jars into the cache (once per pom and
    ``properties``, which override the pom's own, e.g. ``kafka.version``)."""
    pom = compose_dir() / kind / "pom.xml"
    overrides = [f"-D{key}={value}" for key, value in sorted((properties or {}).items())]
    lib = cache_dir() / f"{kind}-lib-{_hash_files(pom, extra=''.join(overrides))}"
    stamp = lib / ".complete"
    if stamp.exists():
        return lib
    if shutil.which("mvn") is None:
        raise InfrastructureError(
            f"Maven (mvn) is needed to fetch the {what} jars from Maven Central; install it "
            "(apt-get install maven) or set the image setting to an image you can pull"
        )
    shutil.rmtree(lib, ignore_errors=True)
    with step(f"resolving {what} jars from Maven Central"):
        result = subprocess.run(
            # --strict-checksums: a jar whose checksum does not match Central's fails the
            # build instead of a warning.
            ["mvn", "-q", "-B", "--strict-checksums", "-f", str(pom), "dependency:copy-dependencies",
             "-DincludeScope=runtime", f"-DoutputDirectory={lib}", *overrides],
            capture_output=True, text=True, check=False,
        )
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
            raise InfrastructureError(
                f"mvn could not resolve the {what} jars (exit {result.returncode}); check "
                f"Maven Central access and {pom}:\n{tail}"
            )
    stamp.write_text(what)
    return lib


def _watchdog_jar(lib: Path) -> Path:
    """Compile the MirrorMaker watchdog against the resolved jars (once per source)."""
    source = compose_dir() / "mirrormaker" / "WatchedMirrorMaker.java"
    jar = cache_dir() / f"mm2-watchdog-{_hash_files(source, extra=lib.name)}.jar"
    if jar.exists():
        return jar
    javac, jar_tool = shutil.which("javac"), shutil.which("jar")
    if javac is None or jar_tool is None:
        raise InfrastructureError(
            "a JDK (javac, jar) is needed to build the MirrorMaker watchdog; install one "
            "(apt-get install openjdk-17-jdk-headless) or set the MirrorMaker image setting "
            "to an image you can pull")
    with tempfile.TemporaryDirectory(prefix="mm2-watchdog-", dir=cache_dir()) as tmp, \
            step("compiling the MirrorMaker watchdog"):
        for cmd in ([javac, "--release", "17", "-cp", f"{lib}/*", "-d", tmp, str(source)],
                    [jar_tool, "cf", f"{jar}.part", "-C", tmp, "."]):
            result = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise InfrastructureError(f"{Path(cmd[0]).name} failed on {source}:\n"
                                          f"{(result.stdout + result.stderr)[-2000:]}")
        Path(f"{jar}.part").rename(jar)
    return jar


def _build(name: str, recipe_dir: Path, base: str, recipe: str, lib: Path | None,
           extra_jars: tuple[Path, ...] = (), dockerfile: str = "Dockerfile",
           extra_dirs: dict[str, Path] | None = None) -> None:
    """``docker build`` of ``recipe_dir``'s files (plus ``lib`` as ``lib/`` and each of
    ``extra_dirs`` under its name) with the legacy builder, which needs no registry."""
    with tempfile.TemporaryDirectory(prefix="ctx-", dir=cache_dir()) as tmp:
        ctx = Path(tmp)
        for item in recipe_dir.iterdir():
            if item.is_file() and item.name != "pom.xml" and item.suffix != ".java":
                shutil.copy2(item, ctx / item.name)
        for where, source in (extra_dirs or {}).items():
            shutil.copytree(source, ctx / where, ignore=shutil.ignore_patterns(".complete"))
        if lib is not None:
            shutil.copytree(lib, ctx / "lib", ignore=shutil.ignore_patterns(".complete"))
            for jar in extra_jars:
                shutil.copy2(jar, ctx / "lib" / jar.name)
        with step(f"building image {name}"):
            env = {**os.environ, "DOCKER_BUILDKIT": "0"}
            result = subprocess.run(
                ["docker", "build", "-q", "-f", str(ctx / dockerfile),
                 "--build-arg", f"BASE_IMAGE={base}",
                 "--label", f"{RECIPE_LABEL}={recipe}", "-t", name, str(ctx)],
                capture_output=True, text=True, check=False, env=env,
            )
            if result.returncode != 0:
                raise InfrastructureError(
                    f"docker build of {name} failed:\n{result.stderr.strip()[-2000:]}"
                )


@dataclass(frozen=True)
class Images:
    """The image names a cluster runs."""

    kafka: str
    redis: str


def ensure_images(kafka_image: str = DEFAULT_KAFKA_IMAGE,
                  redis_image: str = DEFAULT_REDIS_IMAGE) -> Images:
    """Build our images when they are the ones asked for and are missing or stale."""
    wanted = {kafka_image: "kafka", redis_image: "redis"}
    ours = {n: k for n, k in wanted.items()
            if n in (DEFAULT_KAFKA_IMAGE, DEFAULT_REDIS_IMAGE)}
    if not ours:
        return Images(kafka=kafka_image, redis=redis_image)
    base = ensure_base_image()
    for name, kind in ours.items():
        recipe_dir = compose_dir() / kind
        files = sorted(p for p in recipe_dir.iterdir() if p.is_file())
        recipe = _hash_files(*files, extra=base)
        if _image_label(name) == recipe:
            continue
        lib = _kafka_jars() if kind == "kafka" else None
        _build(name, recipe_dir, base, recipe, lib)
    say(f"images ready: {kafka_image}, {redis_image}")
    return Images(kafka=kafka_image, redis=redis_image)


def ensure_mirrormaker_image(image: str = DEFAULT_MIRRORMAKER_IMAGE,
                             version: str | None = None) -> str:
    """Build the MirrorMaker 2 image when it is ours and missing or stale. ``version``
    builds ``streaminfer/mirrormaker:<version>`` from that connect-mirror release instead
    (to compare releases: ``bench/mirrormaker_stall.py``)."""
    if version is None:
        if image != DEFAULT_MIRRORMAKER_IMAGE:
            return image
        version = MIRRORMAKER_VERSION
    else:
        image = f"streaminfer/mirrormaker:{version}"
    swap = {} if version == MIRRORMAKER_VERSION else {"kafka.version": version}  # pom's
    base = ensure_base_image()
    recipe_dir = compose_dir() / "mirrormaker"
    files = sorted(p for p in recipe_dir.iterdir() if p.is_file())
    recipe = _hash_files(*files, extra=base + "".join(swap.values()))
    if _image_label(image) != recipe:
        lib = _jars("mirrormaker", f"MirrorMaker 2 {version}", swap)
        _build(image, recipe_dir, base, recipe, lib, (_watchdog_jar(lib),))
    say(f"image ready: {image}")
    return image
