package database

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// Durability is what a server promises about a commit it has acknowledged,
// as [CheckDurability] reads it from the server.
//
// An idempotency record and a lockout increment are only as durable as the
// commit behind the answer a client got. With asynchronous replication (a
// standby streams, but synchronous_standby_names is empty) the primary
// acknowledges a commit before any standby has it; when the primary dies
// and a standby is promoted, whatever the standby had not received is
// gone, though the clients were told it was done. Measured with the soak
// suite (internal/soak, "failover-async"): the primary stopped with
// "pg_ctl stop -m immediate" after its standby lagged 1s, the standby
// promoted, lost 1343 and 1717 acknowledged idempotency records (of about
// 12k) in two runs, and the handlers of those keys ran again when their
// clients retried; it lost 515 and 822 acknowledged lockout increments, so
// an attacker's failures were forgotten. With a synchronous standby
// (synchronous_standby_names naming it, synchronous_commit on) nothing was
// lost. The smaller run of TestSoakFailover (400 keys, about 100 failures,
// the load mostly inside the 1s lag) lost 232 to 236 records and 32 to 34
// increments in each of 10 runs with the asynchronous standby, none with
// the synchronous one.
//
// Synchronous replication holds only while commits wait for the standby: a
// commit whose wait is cancelled (statement_timeout, a cancelled request)
// is acknowledged with a warning while it is on the primary alone.
type Durability struct {
	// Primary is false when the server is a standby (in recovery).
	Primary bool `json:"primary"`
	// Standbys are the standbys streaming from the server
	// (pg_stat_replication).
	Standbys []Standby `json:"standbys"`
	// SynchronousStandbyNames is the server's synchronous_standby_names:
	// empty means every standby is asynchronous.
	SynchronousStandbyNames string `json:"synchronous_standby_names"`
	// SynchronousCommit is synchronous_commit of the checking session,
	// which the role and the database may set: check with the services'
	// URL. off and local do not wait for any standby.
	SynchronousCommit string `json:"synchronous_commit"`
	// Fsync and FullPageWrites are the server's fsync and
	// full_page_writes: off, a crash of the machine can lose or corrupt
	// what was committed.
	Fsync          bool `json:"fsync"`
	FullPageWrites bool `json:"full_page_writes"`
}

// Standby is one row of pg_stat_replication.
type Standby struct {
	Name string `json:"name"` // application_name
	// State is "streaming" once caught up; SyncState is "async", "sync",
	// "quorum" or "potential". Both are empty when the checking role may
	// not see them (it needs pg_monitor or pg_read_all_stats).
	State     string `json:"state"`
	SyncState string `json:"sync_state"`
}

// Synchronous returns how many standbys the server waits for at commit
// (sync_state sync or quorum).
func (d Durability) Synchronous() int {
	n := 0
	for _, s := range d.Standbys {
		if s.SyncState == "sync" || s.SyncState == "quorum" {
			n++
		}
	}
	return n
}

// ErrAsyncReplication is wrapped by [Durability.Err] when a primary has
// standbys but acknowledges commits before any of them has the commit.
var ErrAsyncReplication = errors.New("asynchronous replication: a commit is acknowledged before any standby has it, " +
	"so a failover loses the acknowledged commits the standby had not received (idempotency records, whose handlers then run again, " +
	"and lockout failures); set synchronous_standby_names on the primary")

// Err returns nil when a commit the server acknowledges survives the loss
// of the server, or of the machine, and else an error naming each risk:
//
//   - the server is a standby (the services must reach the primary);
//   - it has standbys but none synchronous ([ErrAsyncReplication]);
//   - synchronous_standby_names is set but no connected standby is
//     synchronous, so commits wait until one connects;
//   - synchronous_commit is off (a crash loses the last commits even on
//     the primary) or local (no standby is waited for) while it has
//     standbys;
//   - fsync or full_page_writes is off;
//   - the role cannot see its standbys' state.
//
// A lone primary (no standby at all) is not an error: there is no
// failover to lose commits at, which is the common case of development and
// of a managed server whose disk the provider replicates. It loses
// everything since its last backup when its disk dies, though: a
// deployment that needs to survive that should require a standby, as
// "dbctl check-durability --require-standby" does, by checking
// len(d.Standbys) > 0 besides Err.
func (d Durability) Err() error {
	var risks []string
	var errs []error
	if !d.Primary {
		risks = append(risks, "the server is a standby (in recovery): connect to the primary, or add target_session_attrs=read-write to a multi-host URL")
	}
	unknown := false
	for _, s := range d.Standbys {
		if s.SyncState == "" {
			unknown = true
		}
	}
	switch {
	case unknown:
		risks = append(risks, "the role cannot see its standbys' replication state: grant it pg_monitor, or check as a superuser")
	case len(d.Standbys) > 0 && strings.TrimSpace(d.SynchronousStandbyNames) == "":
		errs = append(errs, ErrAsyncReplication)
	case strings.TrimSpace(d.SynchronousStandbyNames) != "" && d.Synchronous() == 0:
		risks = append(risks, fmt.Sprintf("synchronous_standby_names is %q but no connected standby is synchronous: commits wait until one connects", d.SynchronousStandbyNames))
	}
	switch d.SynchronousCommit {
	case "off":
		risks = append(risks, "synchronous_commit is off: a commit is acknowledged before it is flushed, and a crash loses the last ones even without a failover")
	case "local":
		if len(d.Standbys) > 0 {
			risks = append(risks, "synchronous_commit is local: commits do not wait for any standby, and a failover loses the ones it had not received")
		}
	}
	if !d.Fsync {
		risks = append(risks, "fsync is off: a crash of the machine can lose or corrupt committed data")
	}
	if !d.FullPageWrites {
		risks = append(risks, "full_page_writes is off: a crash of the machine can corrupt data pages")
	}
	for _, r := range risks {
		errs = append(errs, errors.New(r))
	}
	if len(errs) == 0 {
		return nil
	}
	return &DurabilityError{Risks: errs}
}

// DurabilityError lists the risks [Durability.Err] found.
type DurabilityError struct{ Risks []error }

func (e *DurabilityError) Error() string {
	msgs := make([]string, len(e.Risks))
	for i, r := range e.Risks {
		msgs[i] = r.Error()
	}
	return "database: acknowledged commits can be lost: " + strings.Join(msgs, "; ")
}

// Unwrap lets errors.Is find [ErrAsyncReplication].
func (e *DurabilityError) Unwrap() []error { return e.Risks }

// CheckDurability reads from the server of db what it promises about an
// acknowledged commit. Call its Err to refuse to start (or to alert) when
// the answer is not what the deployment needs. Run it through the
// services' own URL: synchronous_commit may be set per role and database,
// and it reads the session's. The role needs pg_monitor (or to be a
// superuser) to see its standbys' state.
func CheckDurability(ctx context.Context, db *sql.DB) (Durability, error) {
	conn, err := db.Conn(ctx) // one session for every setting read
	if err != nil {
		return Durability{}, fmt.Errorf("database: check durability: %w", err)
	}
	defer conn.Close()
	var d Durability
	var inRecovery bool
	var fsync, fpw string
	if err := conn.QueryRowContext(ctx, `SELECT pg_is_in_recovery(), current_setting('synchronous_standby_names'),
		current_setting('synchronous_commit'), current_setting('fsync'), current_setting('full_page_writes')`).
		Scan(&inRecovery, &d.SynchronousStandbyNames, &d.SynchronousCommit, &fsync, &fpw); err != nil {
		return Durability{}, fmt.Errorf("database: check durability: %w", err)
	}
	d.Primary, d.Fsync, d.FullPageWrites = !inRecovery, fsync == "on", fpw == "on"
	rows, err := conn.QueryContext(ctx, `SELECT coalesce(application_name, ''), coalesce(state, ''), coalesce(sync_state, '')
		FROM pg_stat_replication ORDER BY application_name, pid`)
	if err != nil {
		return Durability{}, fmt.Errorf("database: check durability: read pg_stat_replication: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var s Standby
		if err := rows.Scan(&s.Name, &s.State, &s.SyncState); err != nil {
			return Durability{}, fmt.Errorf("database: check durability: %w", err)
		}
		d.Standbys = append(d.Standbys, s)
	}
	if err := rows.Err(); err != nil {
		return Durability{}, fmt.Errorf("database: check durability: %w", err)
	}
	return d, nil
}
