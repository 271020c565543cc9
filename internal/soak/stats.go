package soak

import (
	"math"
	"slices"
	"sync"
	"time"
)

// Outcome classifies what a client saw for one request.
type Outcome int

// Outcomes, as counted in the summary.
const (
	Succeeded   Outcome = iota // a final answer: 2xx, or 4xx other than 409 and 429; a login's recorded 401
	Replayed                   // a stored response, Idempotent-Replayed: true
	Conflicted                 // 409 (in flight) or 429 (locked), with a problem+json body
	FailedClean                // 503 with a problem+json body
	FailedDirty                // anything else: a transport error, a hang, a body that is not problem+json
)

// Recorder counts outcomes and latencies; safe for concurrent use.
type Recorder struct {
	mu        sync.Mutex
	counts    [FailedDirty + 1]int
	latencies []time.Duration
	start     time.Time
	end       time.Time
}

// NewRecorder starts the throughput clock.
func NewRecorder() *Recorder { return &Recorder{start: time.Now()} }

// Add records one request.
func (r *Recorder) Add(o Outcome, latency time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts[o]++
	r.latencies = append(r.latencies, latency)
}

// Stop ends the throughput clock.
func (r *Recorder) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.end = time.Now()
}

// Count returns how many requests had outcome o.
func (r *Recorder) Count(o Outcome) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.counts[o]
}

// Sent returns the number of requests recorded.
func (r *Recorder) Sent() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.latencies)
}

// Percentile returns the p-th percentile latency (0 < p ≤ 100), by the
// nearest rank: the smallest latency that at least p% of the requests
// did not exceed.
func (r *Recorder) Percentile(p float64) time.Duration {
	r.mu.Lock()
	l := slices.Clone(r.latencies)
	r.mu.Unlock()
	if len(l) == 0 {
		return 0
	}
	slices.Sort(l)
	i := int(math.Ceil(float64(len(l))*p/100)) - 1
	return l[min(max(i, 0), len(l)-1)]
}

// Throughput is requests per second between NewRecorder and Stop.
func (r *Recorder) Throughput() float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	end := r.end
	if end.IsZero() {
		end = time.Now()
	}
	if d := end.Sub(r.start).Seconds(); d > 0 {
		return float64(len(r.latencies)) / d
	}
	return 0
}
