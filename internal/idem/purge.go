package idem

import (
	"context"
	"fmt"

	"github.com/klozd/api/ent/schema"
)

// purgeSQL deletes one batch of expired rows, found through the
// "expiresAt" index. SKIP LOCKED lets several instances purge at once
// without waiting on each other, and skips a row a claimer is taking over;
// the outer condition re-checks expiry against the row's latest version.
const purgeSQL = `DELETE FROM idempotency_records
WHERE "id" IN (
	SELECT "id" FROM idempotency_records
	WHERE "expiresAt" <= $1
	ORDER BY "expiresAt"
	LIMIT $2
	FOR UPDATE SKIP LOCKED
) AND "expiresAt" <= $1`

// Purge deletes the records expired at Now, completed ones past their TTL
// and abandoned claims past their lease, in batches of
// [StoreConfig.PurgeBatch] rows, one statement each, and returns how many
// it deleted. Expired rows are already treated as absent, so purging only
// reclaims space; it is safe to run from several instances at once. It
// stops at the first batch smaller than the batch size, or when ctx ends.
func (s *Store) Purge(ctx context.Context) (int64, error) {
	now := schema.UTCMillis(s.cfg.Now())
	var total int64
	for {
		res, err := s.db.ExecContext(ctx, purgeSQL, now, s.cfg.PurgeBatch)
		if err != nil {
			return total, fmt.Errorf("idem: purge records expired before %s (%d deleted so far): %w", now.Format("2006-01-02T15:04:05.000Z"), total, err)
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
	now := schema.UTCMillis(s.cfg.Now())
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM idempotency_records WHERE "expiresAt" <= $1`, now).Scan(&n); err != nil {
		return 0, fmt.Errorf("idem: count expired records: %w", err)
	}
	return n, nil
}
