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

// Blank is the problem type of a problem that says no more than its status
// (RFC 9457 §4.2.1).
const Blank = "about:blank"

// Details is an RFC 9457 problem details object.
type Details struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
}

// Write answers status with a problem details body of type "about:blank",
// the status's [Title] as title and detail. retryAfter, when positive, is
// sent as Retry-After in whole seconds, rounded up. The answer is not
// cacheable.
func Write(w http.ResponseWriter, status int, detail string, retryAfter time.Duration) {
	WriteDetails(w, Details{Type: Blank, Status: status, Detail: detail}, retryAfter)
}

// WriteDetails answers d.Status with d as its body, so that a caller can
// name its own problem type: a URI that stays the same for every
// occurrence of the problem, which clients may match on. An empty Type is
// "about:blank" and an empty Title the status's [Title]. retryAfter is as
// for [Write].
func WriteDetails(w http.ResponseWriter, d Details, retryAfter time.Duration) {
	if d.Type == "" {
		d.Type = Blank
	}
	if d.Title == "" {
		d.Title = Title(d.Status)
	}
	body, _ := json.Marshal(d)
	h := w.Header()
	h.Set("Content-Type", ContentType)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-store")
	if retryAfter > 0 {
		h.Set("Retry-After", strconv.FormatInt(int64((retryAfter+time.Second-1)/time.Second), 10))
	}
	w.WriteHeader(d.Status)
	_, _ = w.Write(body)
}

// Title returns the reason phrase RFC 9110 §15 gives status, which differs
// from [http.StatusText] for the few codes RFC 9110 renamed (413 Content Too
// Large, 414 URI Too Long, 416 Range Not Satisfiable, 422 Unprocessable
// Content); for any other code it is http.StatusText's.
func Title(status int) string {
	switch status {
	case http.StatusRequestEntityTooLarge:
		return "Content Too Large"
	case http.StatusRequestURITooLong:
		return "URI Too Long"
	case http.StatusRequestedRangeNotSatisfiable:
		return "Range Not Satisfiable"
	case http.StatusUnprocessableEntity:
		return "Unprocessable Content"
	}
	return http.StatusText(status)
}
