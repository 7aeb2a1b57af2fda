package io.streaminfer.mm2;

import com.sun.net.httpserver.HttpServer;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ListOffsetsResult;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.connect.mirror.MirrorMaker;

/**
 * MirrorMaker 2 (dedicated mode) with a watchdog in the same JVM.
 *
 * <p>MirrorMaker 4.3.1 has been seen to stop replicating into a cluster for good after
 * that cluster's outage: its Connect herder gives up on a connector that does not stop in
 * time ("failed to properly shut down, has become unresponsive") and never starts it
 * again; the remedy its log names is a restart. The watchdog watches what replication
 * is for: for each enabled flow source-&gt;target, the end offset of the replicated
 * heartbeats topic on the target (MirrorMaker emits a heartbeat every second). When both
 * clusters answer and the offset has not moved for {@code MM2_WATCHDOG_STALL_S} seconds
 * (default 60; 0 turns the watchdog off), it logs why and halts the JVM with exit code 3,
 * so that the container's restart policy (docker/compose {@code on-failure}, a Kubernetes
 * pod's {@code Always}) starts a fresh MirrorMaker. The clock only runs while both
 * clusters of a flow answer: a region that is down is an outage, not a stall.
 *
 * <p>A cluster that comes back is where MirrorMaker stalls (the herder gave up on its
 * connector while the cluster was away), and where a region's failback waits on it: a
 * flow whose clusters both answer again after one of them did not is held, for three
 * times {@code MM2_WATCHDOG_RETURN_S} seconds (default 12; 0: only the stall limit), to a
 * stall limit of {@code MM2_WATCHDOG_RETURN_S} rather than the whole stall limit. A healthy MirrorMaker resumes
 * within a few seconds of the return; at 60 s a region's failback took 94 s.
 *
 * <p>Neither limit acts in the first {@code MM2_WATCHDOG_GRACE_S} seconds (default 120)
 * after MirrorMaker starts, while its connectors come up, except for a flow whose
 * heartbeats have already advanced since the start: that flow runs, and a stall of it is
 * one (a region lost right after a restart was otherwise left to stall until the grace
 * ended).
 *
 * <p>{@code MM2_METRICS_PORT} (default 9500; 0: off) serves Prometheus text on
 * {@code /metrics}: per flow the seconds since its heartbeats last advanced, per cluster
 * whether it answers, and the process start time (a restart shows as a change).
 */
public final class WatchedMirrorMaker {
    static final int EXIT_STALLED = 3;

    private final Map<String, Admin> admins = new LinkedHashMap<>();
    private final List<String[]> flows = new ArrayList<>();
    private final Map<String, Long> endOffsets = new HashMap<>();
    private final Map<String, Long> lastProgressMs = new ConcurrentHashMap<>();
    private final Map<String, Boolean> up = new ConcurrentHashMap<>();
    private final String separator;
    private final Map<String, Long> returnedMs = new ConcurrentHashMap<>();  // flow -> back at
    private final Map<String, Boolean> flowed = new ConcurrentHashMap<>();  // advanced since start
    private final long stallMs;
    private final long returnMs;
    private final long graceMs;
    private final long startMs = System.currentTimeMillis();

    WatchedMirrorMaker(Properties props, long stallMs, long returnMs, long graceMs) {
        this.stallMs = stallMs;
        this.returnMs = returnMs;
        this.graceMs = graceMs;
        this.separator = props.getProperty("replication.policy.separator", ".");
        List<String> clusters = new ArrayList<>();
        for (String c : props.getProperty("clusters", "").split(",")) {
            if (!c.isBlank()) {
                clusters.add(c.trim());
            }
        }
        for (String c : clusters) {
            admins.put(c, Admin.create(adminConfig(props, c)));
        }
        for (String s : clusters) {
            for (String t : clusters) {
                if (!s.equals(t) && "true".equalsIgnoreCase(
                        props.getProperty(s + "->" + t + ".enabled", "false").trim())) {
                    flows.add(new String[] {s, t});
                    lastProgressMs.put(key(s, t), startMs);
                }
            }
        }
    }

    /** The cluster's bootstrap servers and its security settings (clusterName.ssl.*, ...). */
    static Map<String, Object> adminConfig(Properties props, String cluster) {
        Map<String, Object> conf = new HashMap<>();
        String prefix = cluster + ".";
        for (String name : props.stringPropertyNames()) {
            String bare = name.startsWith(prefix) ? name.substring(prefix.length()) : null;
            if (bare != null && (bare.equals("bootstrap.servers") || bare.startsWith("security.")
                    || bare.startsWith("ssl.") || bare.startsWith("sasl."))) {
                conf.put(bare, props.getProperty(name).trim());
            }
        }
        conf.put(AdminClientConfig.CLIENT_ID_CONFIG, "mm2-watchdog-" + cluster);
        conf.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 5000);
        conf.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 8000);
        return conf;
    }

    static String key(String source, String target) {
        return source + "->" + target;
    }

    private boolean answers(String cluster) {
        try {
            admins.get(cluster).describeCluster().nodes().get(6, TimeUnit.SECONDS);
            return true;
        } catch (Exception e) {
            return false;
        }
    }

    /** Sum of the end offsets of the replicated heartbeats topic; -1 when it is missing. */
    private long heartbeatEnd(String source, String target) throws Exception {
        String topic = source + separator + "heartbeats";
        Admin admin = admins.get(target);
        Map<String, TopicDescription> found;
        try {
            found = admin.describeTopics(List.of(topic)).allTopicNames().get(6, TimeUnit.SECONDS);
        } catch (Exception e) {
            return -1;
        }
        Map<TopicPartition, OffsetSpec> specs = new HashMap<>();
        found.get(topic).partitions().forEach(p -> specs.put(new TopicPartition(topic, p.partition()),
                OffsetSpec.latest()));
        long sum = 0;
        for (ListOffsetsResult.ListOffsetsResultInfo info
                : admin.listOffsets(specs).all().get(6, TimeUnit.SECONDS).values()) {
            sum += info.offset();
        }
        return sum;
    }

    /** One round: returns the stalled flow, or null. */
    String check() {
        long now = System.currentTimeMillis();
        for (String c : admins.keySet()) {
            up.put(c, answers(c));
        }
        for (String[] flow : flows) {
            String k = key(flow[0], flow[1]);
            if (!up.get(flow[0]) || !up.get(flow[1])) {
                lastProgressMs.put(k, now);  // an outage, not a stall: the clock waits
                returnedMs.put(k, -1L);  // ... until the cluster is back
                continue;
            }
            if (returnedMs.getOrDefault(k, 0L) == -1L) {
                returnedMs.put(k, now);
            }
            long end;
            try {
                end = heartbeatEnd(flow[0], flow[1]);
            } catch (Exception e) {
                continue;  // the target stopped answering mid-round: next round decides
            }
            Long before = endOffsets.put(k, end);
            if (end >= 0 && (before == null || end > before)) {
                lastProgressMs.put(k, now);
                if (before != null) {
                    flowed.put(k, true);
                }
            }
            // For three return limits after a cluster's return, the flow must keep moving
            // (a heartbeat or two copied right after the return does not show that the
            // connector runs: one run advanced once, then stalled until the 60 s limit).
            long back = returnedMs.getOrDefault(k, 0L);
            boolean returning = returnMs > 0 && back > 0 && now - back < 3 * returnMs;
            long limit = returning ? returnMs : stallMs;
            // The start-up grace ends for a flow once it has moved: a region that comes
            // back soon after a restart is then watched like any other return.
            boolean started = now - startMs > graceMs || flowed.getOrDefault(k, false);
            if (started && limit > 0 && now - lastProgressMs.get(k) > limit) {
                return k + (returning ? " (its cluster came back " + (now - back) / 1000
                        + " s ago)" : "");
            }
        }
        return null;
    }

    String metrics() {
        long now = System.currentTimeMillis();
        StringBuilder out = new StringBuilder();
        out.append("# HELP streaminfer_mirrormaker_replication_idle_seconds Seconds since the "
                + "replicated heartbeats of a flow last advanced while both clusters answered.\n"
                + "# TYPE streaminfer_mirrormaker_replication_idle_seconds gauge\n");
        for (String[] flow : flows) {
            out.append(String.format(Locale.ROOT,
                    "streaminfer_mirrormaker_replication_idle_seconds{source=\"%s\",target=\"%s\"} %.1f%n",
                    flow[0], flow[1], (now - lastProgressMs.get(key(flow[0], flow[1]))) / 1000.0));
        }
        out.append("# HELP streaminfer_mirrormaker_cluster_up Whether a cluster answered the "
                + "watchdog's last check (absent before the first).\n# TYPE streaminfer_mirrormaker_cluster_up gauge\n");
        for (String c : admins.keySet()) {
            Boolean answered = up.get(c);
            if (answered != null) {  // absent until the first check
                out.append(String.format(Locale.ROOT,
                        "streaminfer_mirrormaker_cluster_up{cluster=\"%s\"} %d%n", c, answered ? 1 : 0));
            }
        }
        out.append("# HELP streaminfer_mirrormaker_stall_limit_seconds Idle seconds after which "
                + "the watchdog restarts MirrorMaker (0: never).\n"
                + "# TYPE streaminfer_mirrormaker_stall_limit_seconds gauge\n"
                + String.format(Locale.ROOT, "streaminfer_mirrormaker_stall_limit_seconds %.0f%n", stallMs / 1000.0)
                + "# HELP streaminfer_mirrormaker_start_time_seconds When this MirrorMaker "
                + "process started (a change is a restart).\n"
                + "# TYPE streaminfer_mirrormaker_start_time_seconds gauge\n"
                + String.format(Locale.ROOT, "streaminfer_mirrormaker_start_time_seconds %.3f%n", startMs / 1000.0));
        return out.toString();
    }

    void serve(int port) throws IOException {
        HttpServer server = HttpServer.create(new InetSocketAddress(port), 0);
        server.createContext("/metrics", exchange -> {
            byte[] body = metrics().getBytes(StandardCharsets.UTF_8);
            exchange.getResponseHeaders().set("Content-Type", "text/plain; version=0.0.4");
            exchange.sendResponseHeaders(200, body.length);
            try (OutputStream os = exchange.getResponseBody()) {
                os.write(body);
            }
        });
        server.setExecutor(runnable -> {
            Thread t = new Thread(runnable, "mm2-metrics");
            t.setDaemon(true);
            t.start();
        });
        server.start();
    }

    void watch(long intervalMs) {
        while (true) {
            try {
                Thread.sleep(intervalMs);
            } catch (InterruptedException e) {
                return;
            }
            String stalled = check();
            if (stalled != null) {
                System.out.printf("[%s] ERROR watchdog: replication %s has not advanced "
                        + "while both clusters answer (its replicated heartbeats are still; "
                        + "limits %d s, %d s after a cluster's return); halting with exit code "
                        + "%d so that the container restarts MirrorMaker (MM2_WATCHDOG_STALL_S "
                        + "and MM2_WATCHDOG_RETURN_S set the limits)%n",
                        Instant.now(), stalled, stallMs / 1000, returnMs / 1000, EXIT_STALLED);
                System.out.flush();
                Runtime.getRuntime().halt(EXIT_STALLED);  // a stuck herder can hang a clean exit
            }
        }
    }

    static long envSeconds(String name, long fallback) {
        String value = System.getenv(name);
        return value == null || value.isBlank() ? fallback : Long.parseLong(value.trim());
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 1) {
            System.err.println("usage: WatchedMirrorMaker mm2.properties [--clusters ...]");
            System.exit(2);
        }
        Properties props = new Properties();
        try (InputStream in = new FileInputStream(args[0])) {
            props.load(in);
        }
        long stallS = envSeconds("MM2_WATCHDOG_STALL_S", 60);
        long returnS = envSeconds("MM2_WATCHDOG_RETURN_S", 12);
        WatchedMirrorMaker watchdog = new WatchedMirrorMaker(
                props, stallS * 1000, returnS * 1000,
                envSeconds("MM2_WATCHDOG_GRACE_S", 120) * 1000);
        int port = (int) envSeconds("MM2_METRICS_PORT", 9500);
        if (port > 0) {
            watchdog.serve(port);
        }
        Thread thread = new Thread(() -> watchdog.watch(
                envSeconds("MM2_WATCHDOG_INTERVAL_S", 2) * 1000), "mm2-watchdog");
        thread.setDaemon(true);
        thread.start();
        System.out.printf("[%s] INFO watchdog: watching %d flow(s), restart after %d s without "
                + "replicated heartbeats (0: never), %d s once a cluster came back; metrics on "
                + ":%d/metrics%n", Instant.now(), watchdog.flows.size(), stallS, returnS, port);
        MirrorMaker.main(args);
    }
}
