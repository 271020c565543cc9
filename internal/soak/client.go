package soak

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// job is one request a client sends.
type job struct {
	order string // idempotency key, or "" for a login
	pair  *pair  // login pair
}

// keyState is what clients saw for one idempotency key.
type keyState struct {
	// tx sends the key to the transactional endpoint, POST /tx-orders;
	// otherwise it goes to POST /orders.
	tx        bool
	mu        sync.Mutex
	answered  bool       // a final answer (2xx, or 4xx other than 409) came back
	originals int        // final answers without Idempotent-Replayed
	responses []response // every final answer, the originals and the replays
}

// response is what a replay must repeat of the original: the status, the
// body and the headers the middleware stores (Content-Type and Location).
type response struct {
	replayed    bool
	status      int
	contentType string
	location    string
	body        string
}

// differs names what of r differs from the original o, or returns "".
func (r response) differs(o response) string {
	switch {
	case r.status != o.status:
		return fmt.Sprintf("status (%d, not %d)", r.status, o.status)
	case r.contentType != o.contentType:
		return fmt.Sprintf("Content-Type (%q, not %q)", r.contentType, o.contentType)
	case r.location != o.location:
		return fmt.Sprintf("Location (%q, not %q)", r.location, o.location)
	case r.body != o.body:
		return fmt.Sprintf("body (%.120s, not %.120s)", r.body, o.body)
	}
	return ""
}

// answer records a final answer for the key.
func (st *keyState) answer(status int, header http.Header, body []byte) (replayed bool) {
	r := response{
		replayed:    header.Get("Idempotent-Replayed") == "true",
		status:      status,
		contentType: header.Get("Content-Type"),
		location:    header.Get("Location"),
		body:        string(body),
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.answered = true
	st.responses = append(st.responses, r)
	if !r.replayed {
		st.originals++
	}
	return r.replayed
}

// path is the endpoint st's key is sent to.
func (st *keyState) path() string {
	if st.tx {
		return "/tx-orders"
	}
	return "/orders"
}

// isFinal reports whether an order's answer is final: a 2xx, or a 4xx
// other than 409 (in flight, retry later). The suite's handler answers
// only 201 and 503; a 4xx comes from the middleware and is stored and
// replayed like any other final answer.
func isFinal(status int) bool {
	return status >= 200 && status < 300 || status >= 400 && status < 500 && status != http.StatusConflict
}

// pair is one (email, ip) the login clients fail for.
type pair struct {
	email, ip string
	mu        sync.Mutex
	recorded  int // 401s saying the failure was recorded
	unknown   int // clean 503s: the failure may or may not have been recorded
}

// client sends jobs and classifies answers.
type client struct {
	http    *http.Client
	rec     *Recorder // every request of the load phase
	orders  *Recorder // the idempotent endpoint's requests alone
	mu      sync.Mutex
	dirty   []string // answers that were not clean, for the violations list
	timeout time.Duration
	late    *lateCalls // calls past timeout + CallSlack; nil counts none
}

// derive returns a client on c's HTTP client and late counter with
// recorders of its own.
func (c *client) derive() *client {
	return &client{http: c.http, rec: NewRecorder(), orders: NewRecorder(), timeout: c.timeout, late: c.late}
}

func (c *client) dirtyf(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.dirty) < 20 {
		c.dirty = append(c.dirty, fmt.Sprintf(format, args...))
	}
}

// order sends one idempotent request and returns whether it got a final
// answer (see isFinal). The clean errors are a 409 (in flight) and a 503,
// each with a problem+json body; anything else is a violation.
func (c *client) order(ctx context.Context, base, key string, st *keyState) bool {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+st.path(), strings.NewReader(`{"item":"soak","qty":1}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	status, header, body, took, err := c.do(req)
	defer func() { c.orders.Add(Succeeded, took) }() // only the count and duration matter
	if err != nil {
		c.rec.Add(FailedDirty, took)
		c.dirtyf("order %s: no answer within %s: %v", key, c.timeout, err)
		return false
	}
	switch {
	case isFinal(status):
		if st.answer(status, header, body) {
			c.rec.Add(Replayed, took)
		} else {
			c.rec.Add(Succeeded, took)
		}
		return true
	case status == http.StatusConflict && isProblem(header):
		c.rec.Add(Conflicted, took)
	case status == http.StatusServiceUnavailable && isProblem(header):
		c.rec.Add(FailedClean, took)
	default:
		c.rec.Add(FailedDirty, took)
		c.dirtyf("order %s: unexpected %d %s: %.200s", key, status, header.Get("Content-Type"), body)
	}
	return false
}

// resend sends key once more after every lease has passed and reports
// whether it came back as a replay, or else what came back. A final answer
// is kept with the others, and an original counted, for checkInvariants
// to compare; it is not counted in the load's recorders.
func (c *client) resend(ctx context.Context, base, key string, st *keyState) (bool, string) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+st.path(), strings.NewReader(`{"item":"soak","qty":1}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	status, header, body, _, err := c.do(req)
	if err != nil {
		return false, fmt.Sprintf("no answer within %s: %v", c.timeout, err)
	}
	if !isFinal(status) {
		return false, fmt.Sprintf("%d %.120s", status, body)
	}
	if !st.answer(status, header, body) {
		return false, ranAgain
	}
	return true, ""
}

// ranAgain is what [client.resend] reports when the handler ran again;
// checkInvariants reports the key from its side effects.
const ranAgain = "a final answer without Idempotent-Replayed: the handler ran again"

// login sends one failed login for p and returns whether it got an
// answer: a 401 saying the failure was recorded, or a clean 429 (locked).
// The other clean error is a 503 with a problem+json body.
func (c *client) login(ctx context.Context, base string, p *pair) bool {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/login",
		strings.NewReader(url.Values{"email": {p.email}, "password": {"wrong"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set(soakIPHeader, p.ip)
	status, header, body, took, err := c.do(req)
	if err != nil {
		c.rec.Add(FailedDirty, took)
		c.dirtyf("login %s: no answer within %s: %v", p.email, c.timeout, err)
		return false
	}
	switch {
	case status == http.StatusUnauthorized:
		var res loginResult
		if json.Unmarshal(body, &res) != nil || !res.Recorded {
			c.rec.Add(FailedDirty, took)
			c.dirtyf("login %s: 401 without a recorded failure: %.200s", p.email, body)
			return false
		}
		p.mu.Lock()
		p.recorded++
		p.mu.Unlock()
		c.rec.Add(Succeeded, took)
		return true
	case status == http.StatusTooManyRequests && isProblem(header):
		c.rec.Add(Conflicted, took)
		return true
	case status == http.StatusServiceUnavailable && isProblem(header):
		p.mu.Lock()
		p.unknown++
		p.mu.Unlock()
		c.rec.Add(FailedClean, took)
	default:
		c.rec.Add(FailedDirty, took)
		c.dirtyf("login %s: unexpected %d %s: %.200s", p.email, status, header.Get("Content-Type"), body)
	}
	return false
}

func (c *client) do(req *http.Request) (int, http.Header, []byte, time.Duration, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(req.Context(), c.timeout)
	defer cancel()
	resp, err := c.http.Do(req.WithContext(ctx))
	if err != nil {
		took := time.Since(start)
		c.late.add(took, c.timeout)
		return 0, nil, nil, took, err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, err = io.Copy(&buf, resp.Body)
	took := time.Since(start)
	c.late.add(took, c.timeout)
	return resp.StatusCode, resp.Header, buf.Bytes(), took, err
}

func isProblem(h http.Header) bool {
	return strings.HasPrefix(h.Get("Content-Type"), "application/problem+json")
}
