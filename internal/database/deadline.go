package database

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// A driver call blocked on the network does not always end with its
// context: lib/pq answers a cancelled context by sending a cancel request
// over a new connection (which a partition cuts off too) and goes on
// waiting for the server's reply on the old one, and it reads the server's
// first messages at connection start without the caller's context. So the
// connections of a pool opened by [OpenConfig] dial through [netDialer],
// which keeps their sockets, and every call on a connection is watched:
// when its context ends first, the socket is closed, which ends the
// blocked read or write at once, and the connection is dropped from the
// pool. The call then returns its context's error within [DeadlineSlack]
// of the deadline, whatever the network or the server does. (pgx already
// ends a blocked read by setting a deadline on its socket.)

// DeadlineSlack is how long after its context ends a call on a pool opened
// by [OpenConfig] may still take to return: the time to close a socket and
// unwind the driver's call, well under a millisecond on an idle machine.
const DeadlineSlack = 100 * time.Millisecond

// sockets are the network connections a driver connection dialled (one,
// or one per host tried on a multi-host URL), and how many bytes the driver
// has written on them.
type sockets struct {
	mu      sync.Mutex
	conns   []*socket
	killed  bool
	written atomic.Int64
}

func (s *sockets) add(nc net.Conn) *socket {
	sk := &socket{Conn: nc, written: &s.written}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.killed {
		_ = nc.Close()
	}
	s.conns = append(s.conns, sk)
	return sk
}

// last is the socket the connection talks on: the last one dialled.
func (s *sockets) last() *socket {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.conns) == 0 {
		return nil
	}
	return s.conns[len(s.conns)-1]
}

// idleDataOrClosed reports whether the server has sent something on the
// connection while it sat idle in the pool, or closed it: on an idle
// session that is the server ending it (a terminated backend, a shutdown),
// which the driver would only find out after sending the next statement,
// too late to know whether it ran. It peeks without waiting or consuming.
func (s *sockets) idleDataOrClosed() bool {
	sk := s.last()
	if sk == nil {
		return false
	}
	return pending(sk.Conn)
}

// socket counts the bytes written through it.
type socket struct {
	net.Conn
	written *atomic.Int64
}

func (s *socket) Write(p []byte) (int, error) {
	n, err := s.Conn.Write(p)
	s.written.Add(int64(n))
	return n, err
}

// kill closes every socket, ending any read or write blocked on them.
func (s *sockets) kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.killed = true
	for _, nc := range s.conns {
		_ = nc.Close()
	}
}

type socketsKey struct{}

// netDialer is lib/pq's dialer for pools opened by [OpenConfig]: it dials
// as net.Dialer does and records the socket in the [sockets] of the
// connection being opened, found in the context.
type netDialer struct{ d net.Dialer }

func (d netDialer) Dial(network, address string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, address)
}

func (d netDialer) DialTimeout(network, address string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return d.DialContext(ctx, network, address)
}

func (d netDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	nc, err := d.d.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	if s, ok := ctx.Value(socketsKey{}).(*sockets); ok {
		return s.add(nc), nil
	}
	return nc, nil
}

// Bound returns ctx, or, when ctx has no deadline, ctx with timeout d:
// the services give every call a deadline, so that none waits forever for
// a network that never answers.
func Bound(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok || d <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, d)
}
