"""Per-source counts of `scraped_data` (rows, unprocessed, newest `last_seen`), kept by triggers.

The pipeline exporter (exporters/pipeline.py) reports these figures at every scrape; counting
them from the table read all of it every time, seconds of a NAS's disk at tens of millions of
rows. Instead `scraped_data_counts` holds one row per source, and statement-level triggers on
`scraped_data` keep it in the same transaction as every write to the table (the crawler's
upserts, a downstream job's `processed` updates, deletes, TRUNCATE), so the figures are exact
and a scrape reads one row per source. Migration 6 of the PostgreSQL store; it counts the rows
already there once, holding writers back until the triggers are in place.
"""

from __future__ import annotations

# A statement's rows are summed per source and applied in source order (two writers lock the
# counts in one order). SECURITY DEFINER: a downstream role that may update `processed` need
# not be allowed to write the counts. Each branch names only the transition tables its event
# has. On DELETE the newest `last_seen` left is one step down the (source, last_seen) index.
PG_MIGRATION = """
    CREATE TABLE scraped_data_counts (
        source      text        PRIMARY KEY,
        row_count   bigint      NOT NULL,
        unprocessed bigint      NOT NULL,
        newest_seen timestamptz
    );
    CREATE FUNCTION scraped_data_count() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    BEGIN
        -- Each branch names only the transition tables its event has.
        IF TG_OP = 'INSERT' THEN
            INSERT INTO scraped_data_counts AS c
            SELECT source, count(*), count(*) FILTER (WHERE NOT processed), max(last_seen)
              FROM new_rows GROUP BY source ORDER BY source
            ON CONFLICT (source) DO UPDATE SET row_count = c.row_count + EXCLUDED.row_count,
                unprocessed = c.unprocessed + EXCLUDED.unprocessed,
                newest_seen = greatest(c.newest_seen, EXCLUDED.newest_seen);
        ELSIF TG_OP = 'UPDATE' THEN
            INSERT INTO scraped_data_counts AS c
            SELECT source, sum(n), sum(u), max(seen) FROM (
                SELECT source, 1 AS n, (NOT processed)::int AS u, last_seen AS seen FROM new_rows
                UNION ALL
                SELECT source, -1, -(NOT processed)::int, NULL FROM old_rows
            ) AS d GROUP BY source ORDER BY source
            ON CONFLICT (source) DO UPDATE SET row_count = c.row_count + EXCLUDED.row_count,
                unprocessed = c.unprocessed + EXCLUDED.unprocessed,
                newest_seen = greatest(c.newest_seen, EXCLUDED.newest_seen);
        ELSIF TG_OP = 'DELETE' THEN
            -- The newest of what is left: one step down the (source, last_seen) index.
            UPDATE scraped_data_counts AS c
               SET row_count = c.row_count - d.n, unprocessed = c.unprocessed - d.u,
                   newest_seen = (SELECT max(last_seen) FROM scraped_data AS s
                                   WHERE s.source = c.source)
              FROM (SELECT source, count(*) AS n, count(*) FILTER (WHERE NOT processed) AS u
                      FROM old_rows GROUP BY source) AS d
             WHERE c.source = d.source;
        ELSE
            DELETE FROM scraped_data_counts;  -- TRUNCATE
        END IF;
        RETURN NULL;
    END $$;
    -- Writers wait from here to the commit, so the count below misses no row.
    LOCK TABLE scraped_data IN SHARE ROW EXCLUSIVE MODE;
    CREATE TRIGGER scraped_data_count_insert AFTER INSERT ON scraped_data
        REFERENCING NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION scraped_data_count();
    CREATE TRIGGER scraped_data_count_update AFTER UPDATE ON scraped_data
        REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION scraped_data_count();
    CREATE TRIGGER scraped_data_count_delete AFTER DELETE ON scraped_data
        REFERENCING OLD TABLE AS old_rows
        FOR EACH STATEMENT EXECUTE FUNCTION scraped_data_count();
    CREATE TRIGGER scraped_data_count_truncate AFTER TRUNCATE ON scraped_data
        FOR EACH STATEMENT EXECUTE FUNCTION scraped_data_count();
    INSERT INTO scraped_data_counts
    SELECT source, count(*), count(*) FILTER (WHERE NOT processed), max(last_seen)
      FROM scraped_data GROUP BY source;
"""
