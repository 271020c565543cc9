package soak

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klozd/api/internal/database"
	"github.com/klozd/api/internal/idem"
	"github.com/klozd/api/internal/lockout"
	"github.com/klozd/api/internal/problem"
)

// soakIPHeader carries the client address the login endpoint counts, so
// the suite can spread failures over many (email, ip) pairs from loopback.
const soakIPHeader = "X-Soak-Client-IP"

// instance is one server of the app: its own pool, store, service and
// HTTP listener on loopback.
type instance struct {
	name    string
	db      *sql.DB
	store   *idem.Store
	lockout *lockout.Service
	server  *httptest.Server
	// stmtTimeout bounds the handler's check of an unknown outcome.
	stmtTimeout time.Duration

	mu   sync.Mutex
	ends map[string]time.Time // nonce → when its handler returned
	// statuses holds, by nonce, the status the order handler answered:
	// a 5xx for a run whose effect landed anyway is the documented limit
	// of the non-transactional mode (see checkInvariants).
	statuses map[string]int
	// hold, when set, holds the handlers that start until it is released
	// (see holdHandlers).
	hold atomic.Pointer[handlerHold]
}

// handlerHold holds the (non-transactional) order handlers that start while it is set, each
// before its side effect, until release is closed; each held key is sent
// on entered (when there is room).
type handlerHold struct {
	entered chan string
	release chan struct{}
}

// holdHandlers makes the handlers that start from now on wait before
// their side effect until the returned release is called; held receives
// their keys.
func (in *instance) holdHandlers() (held <-chan string, release func()) {
	h := &handlerHold{entered: make(chan string, 64), release: make(chan struct{})}
	in.hold.Store(h)
	var once sync.Once
	return h.entered, func() {
		once.Do(func() {
			in.hold.CompareAndSwap(h, nil)
			close(h.release)
		})
	}
}

func newInstance(name, url string, cfg Config, bare bool) (*instance, error) {
	db, err := database.OpenConfig(url, database.Config{
		Driver:           cfg.Driver,
		MaxOpenConns:     cfg.PoolSize,
		MaxIdleConns:     cfg.PoolSize,
		StatementTimeout: cfg.StatementTimeout,
		LockTimeout:      cfg.LockTimeout,
		ConnectTimeout:   cfg.RequestTimeout,
	})
	if err != nil {
		return nil, err
	}
	in := &instance{name: name, db: db, stmtTimeout: cfg.StatementTimeout, ends: map[string]time.Time{}, statuses: map[string]int{}}
	in.store = idem.NewStore(db, idem.StoreConfig{Lease: cfg.Lease})
	in.lockout, err = lockout.New(db, lockout.Config{
		Policy: lockout.Policy{MaxFailures: maxFailures, EmailLimit: lockout.Off, IPLimit: lockout.Off},
		Logger: quiet,
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	mux := http.NewServeMux()
	orders := http.Handler(http.HandlerFunc(in.createOrder))
	if !bare {
		orders = idem.Middleware(idem.Config{Store: in.store, Logger: quiet, Required: func(*http.Request) bool { return true }})(orders)
	}
	mux.Handle("POST /orders", orders)
	txOrders := http.Handler(http.HandlerFunc(in.createTxOrder))
	if !bare {
		txOrders = idem.Middleware(idem.Config{Store: in.store, Logger: quiet, Transactional: true, Required: func(*http.Request) bool { return true }})(txOrders)
	}
	mux.Handle("POST /tx-orders", txOrders)
	mux.HandleFunc("POST /login", in.login)
	in.server = httptest.NewServer(mux)
	return in, nil
}

func (in *instance) close() {
	in.server.Close()
	_ = in.store.Close()
	_ = in.db.Close()
}

// quiet drops the services' logs: the suite reports through its summary.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// maxFailures is the lockout policy's threshold in the suite.
const maxFailures = 5

// order is the body of a created order; Nonce is unique per execution, so
// a replay that differs from the original is visible.
type order struct {
	Key   string `json:"key"`
	Nonce string `json:"nonce"`
}

// createOrder is the idempotent endpoint: its side effect is a row in
// soak_effects, one per execution.
//
// A side effect whose outcome is unknown (the connection broke after the
// INSERT was sent) is looked up before the handler answers, as a careful
// handler would: found, the order was created; not found (or the look-up
// failed), the handler answers 503. A handler whose context ended (the
// client left, or the middleware lost the lease) does not look.
func (in *instance) createOrder(w http.ResponseWriter, r *http.Request) {
	started := time.Now()
	key := r.Header.Get("Idempotency-Key")
	var b [8]byte
	_, _ = rand.Read(b[:])
	o := order{Key: key, Nonce: hex.EncodeToString(b[:])}
	status := http.StatusCreated
	defer func() {
		in.mu.Lock()
		in.ends[o.Nonce] = time.Now()
		in.statuses[o.Nonce] = status
		in.mu.Unlock()
	}()
	if h := in.hold.Load(); h != nil {
		select {
		case h.entered <- key:
		default:
		}
		<-h.release
	}
	_, err := in.db.ExecContext(r.Context(), `INSERT INTO soak_effects ("key", "instance", "nonce", "started") VALUES ($1, $2, $3, $4)`,
		key, in.name, o.Nonce, started)
	if errors.Is(err, database.ErrOutcomeUnknown) && r.Context().Err() == nil {
		ctx, cancel := context.WithTimeout(r.Context(), in.stmtTimeout)
		var found bool
		if in.db.QueryRowContext(ctx, `SELECT EXISTS (SELECT FROM soak_effects WHERE "nonce" = $1)`, o.Nonce).Scan(&found) == nil && found {
			err = nil
		}
		cancel()
	}
	if err != nil {
		status = http.StatusServiceUnavailable
		problem.Write(w, status, "The order could not be created.", time.Second)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Location", "/orders/"+o.Nonce) // a header the middleware replays
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(o)
}

// createTxOrder is the transactional endpoint (idem.Config.Transactional):
// it inserts one row of soak_tx_orders through the request's transaction,
// which commits together with the stored response or not at all, and
// answers 201 with the nonce. On any error it answers 503, which rolls the
// transaction back; it never looks up an unknown outcome, the middleware
// answering only what committed. Without the middleware (the bare
// instances) it writes through the pool.
func (in *instance) createTxOrder(w http.ResponseWriter, r *http.Request) {
	var b [8]byte
	_, _ = rand.Read(b[:])
	o := order{Key: r.Header.Get("Idempotency-Key"), Nonce: hex.EncodeToString(b[:])}
	var exec interface {
		ExecContext(context.Context, string, ...any) (sql.Result, error)
	} = in.db
	if tx := idem.TxFromContext(r.Context()); tx != nil {
		exec = tx
	}
	if _, err := exec.ExecContext(r.Context(), `INSERT INTO soak_tx_orders ("key", "nonce", "instance") VALUES ($1, $2, $3)`,
		o.Key, o.Nonce, in.name); err != nil {
		problem.Write(w, http.StatusServiceUnavailable, "The order could not be created.", time.Second)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Location", "/tx-orders/"+o.Nonce)
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(o)
}

// loginResult is the body of a failed login the suite counts.
type loginResult struct {
	Recorded bool `json:"recorded"`
	Failures int  `json:"failures"`
}

// login checks the lockout, then treats every password as wrong and
// records the failure, answering 401 with what was recorded.
func (in *instance) login(w http.ResponseWriter, r *http.Request) {
	email, ip := r.FormValue("email"), r.Header.Get(soakIPHeader)
	// A failing Check denies (fail closed) with LimitUnavailable: 503.
	if d, _ := in.lockout.Check(r.Context(), email, ip); !d.Allowed {
		lockout.WriteDenied(w, d)
		return
	}
	d, err := in.lockout.RecordFailure(r.Context(), email, ip)
	if err != nil {
		problem.Write(w, http.StatusServiceUnavailable, "The failure could not be recorded.", time.Second)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	_ = json.NewEncoder(w).Encode(loginResult{Recorded: true, Failures: d.Failures})
}
