package lockout_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/klozd/api/internal/lockout"
	"github.com/klozd/api/internal/pgtest"
)

// loginHandler checks the lockout, counts the attempt before it verifies
// the password (so that a concurrent burst gets no more passwords
// verified than the policy allows) and resets the count when the password
// is right. A denied attempt is answered exactly as a wrong password, so
// the answer never tells whether the account exists or is being attacked.
func loginHandler(svc *lockout.Service, clientIP *lockout.ClientIP, passwords map[string]string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		email, password := r.PostFormValue("email"), r.PostFormValue("password")
		ip := clientIP.FromRequest(r)
		d, err := svc.Check(r.Context(), email, ip)
		if err != nil {
			log.Printf("login: %v", err) // the decision still says what to do
		}
		if !d.Allowed {
			http.Error(w, "wrong email or password", http.StatusUnauthorized)
			return
		}
		// Count the attempt before trying it; Admitted (not Allowed, which
		// is for the next attempt) says whether this one may be tried.
		d, err = svc.RecordFailure(r.Context(), email, ip)
		if err != nil {
			log.Printf("login: %v", err)
		}
		if !d.Admitted {
			http.Error(w, "wrong email or password", http.StatusUnauthorized)
			return
		}
		if want, ok := passwords[email]; !ok || want != password {
			http.Error(w, "wrong email or password", http.StatusUnauthorized)
			return
		}
		if err := svc.RecordSuccess(r.Context(), email, ip); err != nil {
			log.Printf("login: %v", err)
		}
		fmt.Fprintln(w, "welcome")
	})
}

func Example() {
	db, done := exampleDB()
	defer done()
	svc, err := lockout.New(db, lockout.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	// Behind a load balancer at 10.0.0.0/8 that appends X-Forwarded-For.
	h := loginHandler(svc, lockout.NewClientIP("10.0.0.0/8"), map[string]string{"ann@example.org": "correct horse"})

	login := func(email, password, ip string) {
		form := url.Values{"email": {email}, "password": {password}}
		r := httptest.NewRequest("POST", "/login", strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.RemoteAddr = "10.1.2.3:5555"
		r.Header.Set("X-Forwarded-For", ip)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		fmt.Printf("%s from %s: %d %s", email, ip, w.Code, w.Body.String())
	}
	for range 5 {
		login("Ann@Example.org", "guess", "203.0.113.7")
	}
	login("ann@example.org", "correct horse", "203.0.113.7")  // locked: answered as a wrong password
	login("ann@example.org", "correct horse", "198.51.100.1") // another client is not locked out
	login("nobody@example.org", "guess", "203.0.113.7")       // unknown accounts look the same
	// Output:
	// Ann@Example.org from 203.0.113.7: 401 wrong email or password
	// Ann@Example.org from 203.0.113.7: 401 wrong email or password
	// Ann@Example.org from 203.0.113.7: 401 wrong email or password
	// Ann@Example.org from 203.0.113.7: 401 wrong email or password
	// Ann@Example.org from 203.0.113.7: 401 wrong email or password
	// ann@example.org from 203.0.113.7: 401 wrong email or password
	// ann@example.org from 198.51.100.1: 200 welcome
	// nobody@example.org from 203.0.113.7: 401 wrong email or password
}

// exampleDB stands in for database.Open(os.Getenv("DATABASE_URL")): a
// fresh migrated database from pgtest, which wants a testing.TB.
func exampleDB() (*sql.DB, func()) {
	tb := &exampleTB{}
	db := pgtest.DB(tb)
	return db, tb.cleanup
}

// exampleTB is the part of testing.TB pgtest uses, for examples.
type exampleTB struct {
	testing.TB
	cleanups []func()
}

func (*exampleTB) Helper()                     {}
func (*exampleTB) Logf(string, ...any)         {}
func (*exampleTB) Failed() bool                { return false }
func (*exampleTB) Fatalf(f string, a ...any)   { panic(fmt.Sprintf(f, a...)) }
func (tb *exampleTB) Cleanup(f func())         { tb.cleanups = append(tb.cleanups, f) }
func (tb *exampleTB) Context() context.Context { return context.Background() }
func (tb *exampleTB) cleanup() {
	for i := len(tb.cleanups) - 1; i >= 0; i-- {
		tb.cleanups[i]()
	}
}
