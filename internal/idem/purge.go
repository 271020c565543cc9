package idem

import (
	"context"
	"fmt"
)

// purgeSQL deletes one batch of expired rows, found through the
// "expiresAt" index. SKIP LOCKED lets several instances purge at once
// without waiting on each other, and skips a row a claimer is taking over;
// the outer condition re-checks expiry against the row's latest version.
const purgeSQL = `DELETE FROM idempotency_records
WHERE "id" IN (
	SELECT "id" FROM idempotency_records
	WHERE "expiresAt" <= COALESCE($1::timestamp, ` + dbNow + `)
	ORDER BY "expiresAt"
	LIMIT $2
	FOR UPDATE SKIP LOCKED
) AND "expiresAt" <= COALESCE($1::timestamp, ` + dbNow + `)`

// Purge deletes the records expired by the store's clock (the database's,
// unless [StoreConfig.Now] is set), completed ones past their TTL
// and abandoned claims past their lease, in batches of
// [StoreConfig.PurgeBatch] rows, one statement each, and returns how many
// it deleted. Expired rows are already treated as absent, so purging only
// reclaims space; it is safe to run from several instances at once. It
// stops at the first batch smaller than the batch size, or when ctx ends.
func (s *Store) Purge(ctx context.Context) (int64, error) {
	var total int64
	for {
		res, err := s.db.ExecContext(ctx, purgeSQL, s.now(), s.cfg.PurgeBatch)
		if err != nil {
			return total, fmt.Errorf("idem: purge expired records (%d deleted so far): %w", total, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, fmt.Errorf("idem: purge: %w", err)
		}
		total += n
		if s.cfg.OnPurge != nil && n > 0 {
			s.cfg.OnPurge(total)
		}
		if n < int64(s.cfg.PurgeBatch) {
			return total, nil
		}
	}
}

// CountExpired returns how many records [Store.Purge] would delete now, for
// a dry run. It deletes nothing.
func (s *Store) CountExpired(ctx context.Context) (int64, error) {
	var n int64
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM idempotency_records WHERE "expiresAt" <= COALESCE($1::timestamp, `+dbNow+`)`, s.now()).Scan(&n); err != nil {
		return 0, fmt.Errorf("idem: count expired records: %w", err)
	}
	return n, nil
}
