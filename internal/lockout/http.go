package lockout

import (
	"net/http"
	"time"

	"github.com/klozd/api/internal/problem"
)

// WriteDenied answers a denied attempt for deployments that prefer an
// explicit status to the enumeration-safe default (answering exactly as a
// wrong password, see the package documentation): 429 Too Many Requests
// with Retry-After in whole seconds, or 503 Service Unavailable when the
// denial comes from an unreachable database ([LimitUnavailable]), each with
// an RFC 9457 problem+json body. The body is the same for every account,
// existing or not, and for every limit.
func WriteDenied(w http.ResponseWriter, d Decision) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if d.Limit == LimitUnavailable {
		problem.Write(w, http.StatusServiceUnavailable, "Login is unavailable. Try again later.", 0)
		return
	}
	problem.Write(w, http.StatusTooManyRequests, "Too many login attempts. Try again later.", max(d.RetryAfter, time.Second))
}
