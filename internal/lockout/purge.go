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
		res, err := s.exec(ctx, s.q.purge, cut, s.batch)
		n, err := affected("purge", res, err)
		total += n
		if s.onPurge != nil && n > 0 {
			s.onPurge(total)
		}
		if err != nil || n < int64(s.batch) {
			return total, err
		}
		if err := ctx.Err(); err != nil {
			return total, fmt.Errorf("lockout: purge: %w", err)
		}
	}
}

// CountStale returns how many rows [Service.Purge] would delete now, for a
// dry run. It deletes nothing.
func (s *Service) CountStale(ctx context.Context) (int64, error) {
	_, cut := s.clock()
	var n int64
	if err := s.db.QueryRowContext(ctx, s.q.countStale, cut).Scan(&n); err != nil {
		return 0, fmt.Errorf("lockout: count stale rows: %w", err)
	}
	return n, nil
}
