// Package problem writes RFC 9457 problem details: the error bodies of the
// idempotency middleware and the lockout service's HTTP helper.
package problem

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// ContentType is the media type of a problem details body.
const ContentType = "application/problem+json"

// Details is an RFC 9457 problem details object.
type Details struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
}

// Write answers status with a problem details body of type "about:blank",
// the status text as title and detail. retryAfter, when positive, is sent
// as Retry-After in whole seconds, rounded up. The answer is not cacheable.
func Write(w http.ResponseWriter, status int, detail string, retryAfter time.Duration) {
	body, _ := json.Marshal(Details{
		Type:   "about:blank",
		Title:  http.StatusText(status),
		Status: status,
		Detail: detail,
	})
	h := w.Header()
	h.Set("Content-Type", ContentType)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-store")
	if retryAfter > 0 {
		h.Set("Retry-After", strconv.FormatInt(int64((retryAfter+time.Second-1)/time.Second), 10))
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
