"""Several regions joined by MirrorMaker 2: failover producing, the region monitor, the
region policy of a worker, answered-id seeding, the de-duplicating reader, replication status."""
