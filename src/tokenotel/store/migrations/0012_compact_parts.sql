-- 0012: a part of token_events under 100,000 rows is written in ClickHouse's compact format
-- (one data file and one marks file for all its columns), not the wide one (two files for each
-- column and subcolumn: some 190 files an insert). ClickHouse writes a part in the compact
-- format while it is under either of min_bytes_for_wide_part (10 MiB by default) and
-- min_rows_for_wide_part. An insert of an import (20,000 rows of a vendor's whole records) was
-- over 10 MiB, and creating its files cost more CPU than writing their data. Merged parts of
-- 100,000 rows and more are wide as before: a search reads only the columns it needs.
ALTER TABLE token_events MODIFY SETTING min_rows_for_wide_part = 100000;
