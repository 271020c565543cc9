package lockout

import (
	"context"
	"fmt"
)

// Purge deletes stale rows (unlocked, and with no failure within the window
// since their last failure or the end of their lock: rows that would start
// over anyway) in batches of [Config.PurgeBatch], and returns how many it
// deleted. Each batch is one short statement that skips rows locked by
// logins or by another instance's Purge, so several instances may purge at
// once without waiting on each other. It stops at the first error or when
// ctx is done, returning the count so far.
func (s *Service) Purge(ctx context.Context) (int64, error) {
	_, cut := s.clock()
	var total int64
	for {
		res, err := s.db.ExecContext(ctx, s.q.purge, cut, s.batch)
		n, err := affected("purge", res, err)
		total += n
		if err != nil || n < int64(s.batch) {
			return total, err
		}
		if err := ctx.Err(); err != nil {
			return total, fmt.Errorf("lockout: purge: %w", err)
		}
	}
}
