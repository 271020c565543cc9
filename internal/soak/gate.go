package soak

import (
	"context"
	"sync"
)

// gate ties one fault to the load by request count, never by time: the
// worker that takes job at triggers the fault and waits (as does every
// worker after it) until the fault arms the gate, the moment the load may
// go on into the fault (a lock taken, a server stopped, a partition
// begun); from job until on the load waits until the fault is done. So
// every fault runs during the load, however fast or slow the machine:
// the load cannot end before it, and a fault that needs statements in
// flight gets them.
type gate struct {
	at, until int
	trigger   chan struct{} // closed when job at is taken
	armed     chan struct{} // closed by arm
	done      chan struct{} // closed by finish
	trigOnce  sync.Once
	armOnce   sync.Once
	doneOnce  sync.Once
}

type gates []*gate

// newGates places a gate at each mark (a fraction of jobs), each holding
// the load from window jobs after its trigger, window being twice the
// concurrency: enough for a request of every worker to meet the fault.
// The last job always waits, so the load ends after every fault.
func newGates(marks []float64, jobs, concurrency int) gates {
	var gs gates
	for _, m := range marks {
		at := min(int(m*float64(jobs)), jobs-1)
		gs = append(gs, &gate{
			at:      at,
			until:   min(at+2*concurrency, jobs-1),
			trigger: make(chan struct{}),
			armed:   make(chan struct{}),
			done:    make(chan struct{}),
		})
	}
	return gs
}

func (g *gate) arm()    { g.armOnce.Do(func() { close(g.armed) }) }
func (g *gate) finish() { g.arm(); g.doneOnce.Do(func() { close(g.done) }) }

// pass holds the worker about to send job i as the gates say; it returns
// false if ctx ended first.
func (gs gates) pass(ctx context.Context, i int) bool {
	for _, g := range gs {
		if i < g.at {
			return true // later gates are later still
		}
		g.trigOnce.Do(func() { close(g.trigger) })
		wait := g.armed
		if i >= g.until {
			wait = g.done
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// openAll releases every worker, for a fault goroutine that stops early.
func (gs gates) openAll() {
	for _, g := range gs {
		g.finish()
	}
}
