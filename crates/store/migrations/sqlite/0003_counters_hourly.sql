-- Hourly counters: what per-minute counters are rolled up into once an hour is over, so that
-- months of history (seasonal baselines read the same hour of week over several weeks) stay
-- small. Minute rows are kept for a few days, hourly rows for months.
CREATE TABLE counters_hourly (
    hour        INTEGER NOT NULL,
    tenant      TEXT NOT NULL,
    source      TEXT NOT NULL,
    channel     TEXT NOT NULL,
    destination TEXT NOT NULL,
    metric      TEXT NOT NULL,
    count       INTEGER NOT NULL,
    PRIMARY KEY (hour, tenant, source, channel, destination, metric)
) WITHOUT ROWID;
