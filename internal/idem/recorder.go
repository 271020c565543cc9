package idem

import (
	"bufio"
	"net"
	"net/http"
	"sync/atomic"
)

// recorder passes a handler's response through to the client while keeping
// a copy of its status, the headers to replay and up to limit body bytes.
// It holds back WriteHeader until the first Write or Flush, or the end, so
// that a missing Content-Type can still be set (to the same value the
// replay will carry) and the headers kept are the ones sent.
type recorder struct {
	w           http.ResponseWriter
	limit       int
	defaultType string
	keep        []string // canonical names of the headers to store

	status   int // final status; 0 until WriteHeader or the first Write
	sent     bool
	saved    http.Header
	buf      []byte
	overflow bool
	hijacked bool // the handler took over the connection
	// stopped is set when the handler is told to stop (its lease lost);
	// late, when it writes its status or body after that.
	stopped, late atomic.Bool
}

func (r *recorder) Header() http.Header { return r.w.Header() }

func (r *recorder) WriteHeader(code int) {
	if r.sent || r.status != 0 {
		return // superfluous, as net/http would log
	}
	if r.stopped.Load() {
		r.late.Store(true)
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		r.w.WriteHeader(code) // informational: not the final response
		return
	}
	r.status = code
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.stopped.Load() {
		r.late.Store(true)
	}
	if !r.sent {
		r.send(true)
	}
	if !bodyAllowed(r.status) {
		// net/http sends no body with a 204 or 304 (the write fails with
		// http.ErrBodyNotAllowed): neither is one stored.
		return r.w.Write(p)
	}
	if !r.overflow {
		if len(r.buf)+len(p) > r.limit {
			r.overflow, r.buf = true, nil
		} else {
			r.buf = append(r.buf, p...)
		}
	}
	return r.w.Write(p)
}

// Flush sends the headers and flushes the client's writer, if it can. A
// body may follow, so the headers are those of a response with a body.
func (r *recorder) Flush() {
	if !r.sent {
		r.send(true)
	}
	_ = http.NewResponseController(r.w).Flush()
}

// Hijack hands the connection to the handler, when the client's writer
// allows it. What the handler then sends bypasses the recorder, so the
// middleware stores nothing for it.
func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(r.w).Hijack()
	if err == nil {
		r.hijacked = true
	}
	return conn, brw, err
}

// Unwrap lets http.ResponseController reach the client's writer.
func (r *recorder) Unwrap() http.ResponseWriter { return r.w }

// finish sends the status of a handler that wrote no body.
func (r *recorder) finish() {
	if !r.sent {
		r.send(false)
	}
}

// send sends the headers. When the handler writes (or may write) a body,
// a missing Content-Type becomes the default before the headers leave, so
// net/http never sniffs one from the first chunk: the original and its
// replays carry the same type. A header set to nil, net/http's way to
// suppress sniffing, is left alone.
func (r *recorder) send(body bool) {
	r.sent = true
	if r.status == 0 {
		r.status = http.StatusOK
	}
	h := r.w.Header()
	if body && bodyAllowed(r.status) {
		if _, ok := h["Content-Type"]; !ok {
			h.Set("Content-Type", r.defaultType)
		}
	}
	for _, k := range r.keep {
		if v, ok := h[k]; ok && len(v) > 0 {
			if r.saved == nil {
				r.saved = make(http.Header, len(r.keep))
			}
			r.saved[k] = append([]string(nil), v...)
		}
	}
	r.w.WriteHeader(r.status)
}

// bodyAllowed reports whether a response with status may carry a body.
func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}
