package lockout

import (
	"net/http"
	"strconv"
)

// WriteDenied answers a denied attempt for deployments that prefer an
// explicit status to the enumeration-safe default (answering exactly as a
// wrong password, see the package documentation): 429 Too Many Requests
// with Retry-After in whole seconds, or 503 Service Unavailable when the
// denial comes from an unreachable database ([LimitUnavailable]). The body
// is the same short text for every account, existing or not.
func WriteDenied(w http.ResponseWriter, d Decision) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if d.Limit == LimitUnavailable {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("Login is unavailable. Try again later.\n"))
		return
	}
	secs := int64(d.RetryAfter.Seconds())
	h.Set("Retry-After", strconv.FormatInt(max(secs, 1), 10))
	w.WriteHeader(http.StatusTooManyRequests)
	_, _ = w.Write([]byte("Too many login attempts. Try again later.\n"))
}
