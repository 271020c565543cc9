package idem

import (
	"context"
	"fmt"
	"time"
)

// InFlightError is the [ErrInFlight] that [Store.Begin] returns when a live
// claim holds the key: errors.Is(err, ErrInFlight) holds for it.
type InFlightError struct {
	// ExpiresAt is when the claim's lease ends unless it is renewed, on the
	// store's clock (the database's, unless [StoreConfig.Now] is set).
	ExpiresAt time.Time
}

func (e *InFlightError) Error() string { return ErrInFlight.Error() }

func (e *InFlightError) Unwrap() error { return ErrInFlight }

// leaseLeftSQL is how long from now, on the store's clock, until $1, in
// milliseconds: the database's clock is the one leases are kept on.
const leaseLeftSQL = `SELECT GREATEST(0, EXTRACT(EPOCH FROM ($1::timestamp - COALESCE($2::timestamp, ` + dbNow + `))) * 1000)::bigint`

// leaseLeftTimeout bounds [Store.until]: a hint is not worth a long wait.
const leaseLeftTimeout = time.Second

// until returns how long from now until t, on the store's clock. With
// [StoreConfig.Now] it asks no one; otherwise it is one query that reads no
// table.
func (s *Store) until(ctx context.Context, t time.Time) (time.Duration, error) {
	if s.cfg.Now != nil {
		return max(0, t.Sub(s.cfg.Now())), nil
	}
	ctx, cancel := context.WithTimeout(ctx, leaseLeftTimeout)
	defer cancel()
	st, err := s.prepared(ctx, leaseLeftSQL)
	if err != nil {
		return 0, fmt.Errorf("idem: lease left: %w", err)
	}
	var ms int64
	if err := st.QueryRow(ctx, t.UTC(), s.now()).Scan(&ms); err != nil {
		return 0, fmt.Errorf("idem: lease left: %w", err)
	}
	return time.Duration(ms) * time.Millisecond, nil
}
