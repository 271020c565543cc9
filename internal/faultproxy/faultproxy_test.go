package faultproxy_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/klozd/api/internal/faultproxy"
	"github.com/klozd/api/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// patience bounds every wait for something that should happen.
const patience = 10 * time.Second

// quiet is how long a read waits to show that nothing arrives.
const quiet = 200 * time.Millisecond

// echoServer starts a server on loopback that writes back what it reads
// and closes a connection at its end of file. It stops, with every
// goroutine it started, when the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	return serve(t, func(c net.Conn) {
		_, _ = io.Copy(c, c)
	})
}

// serve starts a server on loopback that runs handle for each connection
// and then closes it. Cleanup closes the listener and every connection and
// waits for the handlers.
func serve(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				handle(c)
				_ = c.Close()
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// accepted starts a server on loopback that hands each connection to the
// test, which then plays the server's part. Connections are closed when
// the test ends.
func accepted(t *testing.T) (string, <-chan net.Conn) {
	t.Helper()
	ch := make(chan net.Conn, 16)
	stop := make(chan struct{})
	addr := serve(t, func(c net.Conn) {
		ch <- c
		<-stop // keep c open until the test ends
	})
	t.Cleanup(func() { close(stop) }) // runs before serve's cleanup
	return addr, ch
}

func startProxy(t *testing.T, target string) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.Start(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func write(t *testing.T, c net.Conn, s string) {
	t.Helper()
	_ = c.SetWriteDeadline(time.Now().Add(patience))
	if _, err := c.Write([]byte(s)); err != nil {
		t.Fatalf("write %q: %v", s, err)
	}
}

// expect reads exactly want from c.
func expect(t *testing.T, c net.Conn, want string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(patience))
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read %q: got %q: %v", want, got, err)
	}
	if string(got) != want {
		t.Fatalf("read %q, want %q", got, want)
	}
}

func roundTrip(t *testing.T, c net.Conn, s string) {
	t.Helper()
	write(t, c, s)
	expect(t, c, s)
}

// expectNothing asserts that nothing arrives on c within quiet.
func expectNothing(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(quiet))
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read %q, %v; want nothing until the deadline", buf[:n], err)
	}
}

// expectClosed asserts that c's next read ends the connection, with an
// end of file or a reset, and brings no bytes.
func expectClosed(t *testing.T, c net.Conn) error {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(patience))
	got, err := io.ReadAll(c)
	if len(got) > 0 {
		t.Fatalf("read %q before the end", got)
	}
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read: %v, want end of file or reset", err)
	}
	if err == nil {
		return io.EOF
	}
	return err
}

// waitFor polls cond until it holds or patience runs out.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestStartRefusesNonLoopbackTarget(t *testing.T) {
	for _, target := range []string{"10.0.0.1:5432", "localhost:5432", "example.com:5432", "5432"} {
		if p, err := faultproxy.Start(target); err == nil {
			_ = p.Close()
			t.Errorf("Start(%q) succeeded, want an error", target)
		}
	}
}

func TestForwardsBothWays(t *testing.T) {
	p := startProxy(t, echoServer(t))
	if got := p.Addr(); !strings.HasPrefix(got, "127.0.0.1:") {
		t.Fatalf("Addr() = %q, want 127.0.0.1:port", got)
	}
	a, b := dial(t, p.Addr()), dial(t, p.Addr())
	roundTrip(t, a, "hello")
	roundTrip(t, b, "world")
	waitFor(t, "two connections", func() bool { return p.Conns() == 2 })

	// More than a chunk, written and read at once.
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	errc := make(chan error, 1)
	go func() {
		_, err := a.Write(big)
		errc <- err
	}()
	_ = a.SetReadDeadline(time.Now().Add(patience))
	got := make([]byte, len(big))
	if _, err := io.ReadFull(a, got); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, big) {
		t.Fatal("1 MiB came back changed")
	}

	// A half close reaches the server, whose close reaches the client.
	if err := a.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if err := expectClosed(t, a); err != io.EOF {
		t.Fatalf("after a half close: %v, want end of file", err)
	}
	waitFor(t, "one connection", func() bool { return p.Conns() == 1 })
}

func TestStallHoldsAndHealDelivers(t *testing.T) {
	target, servers := accepted(t)
	p := startProxy(t, target)
	c := dial(t, p.Addr())
	s := <-servers
	roundTripVia(t, c, s, "ping")
	roundTripVia(t, s, c, "pong")

	p.Stall()
	p.Stall() // a second Stall changes nothing
	write(t, c, "a")
	write(t, c, "b")
	write(t, s, "x")
	write(t, s, "y")
	expectNothing(t, s)
	expectNothing(t, c)
	write(t, c, "c")
	write(t, s, "z")

	// A connection made during the stall is accepted and held too.
	late := dial(t, p.Addr())
	write(t, late, "late")
	lateServer := <-servers
	waitFor(t, "two connections", func() bool { return p.Conns() == 2 })
	expectNothing(t, lateServer)
	p.Heal()
	expect(t, s, "abc")
	expect(t, c, "xyz")
	expect(t, lateServer, "late")
	p.Heal() // a second Heal changes nothing
	roundTripVia(t, c, s, "after")
	roundTripVia(t, lateServer, late, "after")
}

// roundTripVia writes s on from and reads it on to.
func roundTripVia(t *testing.T, from, to net.Conn, s string) {
	t.Helper()
	write(t, from, s)
	expect(t, to, s)
}

func TestResetAll(t *testing.T) {
	target, servers := accepted(t)
	p := startProxy(t, target)
	c := dial(t, p.Addr())
	s := <-servers
	roundTripVia(t, c, s, "ping")

	// Bytes waiting in a stall are lost, and the stalled pipes end.
	p.Stall()
	write(t, c, "lost")
	write(t, s, "lost")
	expectNothing(t, c)
	p.ResetAll()
	if err := expectClosed(t, c); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("client: %v, want a reset", err)
	}
	if err := expectClosed(t, s); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("server: %v, want a reset", err)
	}
	if n := p.Conns(); n != 0 {
		t.Fatalf("Conns() = %d after ResetAll, want 0", n)
	}

	// The proxy goes on, and the stall stays until healed.
	p.Heal()
	c2 := dial(t, p.Addr())
	s2 := <-servers
	roundTripVia(t, c2, s2, "again")
}

func TestRefuse(t *testing.T) {
	p := startProxy(t, echoServer(t))
	open := dial(t, p.Addr())
	roundTrip(t, open, "before")

	p.Refuse(true)
	for range 3 {
		// The reset may come before the dial has returned, and then the
		// dial fails with it.
		c, err := net.Dial("tcp", p.Addr())
		if err != nil {
			if !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("dial: %v, want success or a reset", err)
			}
			continue
		}
		expectClosed(t, c)
		_ = c.Close()
	}
	roundTrip(t, open, "untouched") // an open connection goes on

	p.Refuse(false)
	roundTrip(t, dial(t, p.Addr()), "after")
}

func TestBlackhole(t *testing.T) {
	target, servers := accepted(t)
	p := startProxy(t, target)

	p.Blackhole(true)
	c := dial(t, p.Addr())
	write(t, c, "anyone?")
	waitFor(t, "the connection to be held", func() bool { return p.Conns() == 1 })
	expectNothing(t, c)
	select {
	case <-servers:
		t.Fatal("a blackholed connection reached the target")
	default:
	}

	// Blackhole(false) lets held connections go and forwards new ones.
	p.Blackhole(false)
	expectClosed(t, c)
	if n := p.Conns(); n != 0 {
		t.Fatalf("Conns() = %d after Blackhole(false), want 0", n)
	}
	c2 := dial(t, p.Addr())
	roundTripVia(t, c2, <-servers, "through")

	// Close ends a held connection.
	p.Blackhole(true)
	c3 := dial(t, p.Addr())
	waitFor(t, "the connection to be held", func() bool { return p.Conns() == 2 })
	expectNothing(t, c3)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, c3)
	expectClosed(t, c2)
}

func TestDelay(t *testing.T) {
	const d = 150 * time.Millisecond
	target, servers := accepted(t)
	p := startProxy(t, target)
	c := dial(t, p.Addr())
	s := <-servers
	roundTripVia(t, c, s, "warm")

	p.Delay(d)
	start := time.Now()
	roundTripVia(t, c, s, "query") // client to server is not delayed
	write(t, s, "reply")
	expect(t, c, "reply")
	if got := time.Since(start); got < d {
		t.Fatalf("reply came after %v, want at least %v", got, d)
	}

	// Chunks keep their order.
	for _, m := range []string{"1", "2", "3", "4"} {
		write(t, s, m)
	}
	expect(t, c, "1234")

	p.Delay(0)
	roundTripVia(t, s, c, "prompt")
}

func TestDropNextReply(t *testing.T) {
	p := startProxy(t, echoServer(t))
	a, b := dial(t, p.Addr()), dial(t, p.Addr())
	roundTrip(t, a, "a1")
	roundTrip(t, b, "b1")

	p.DropNextReply()
	p.DropNextReply() // still one reply
	write(t, a, "statement")
	expectClosed(t, a)
	waitFor(t, "the dropped connection to go", func() bool { return p.Conns() == 1 })

	roundTrip(t, b, "b2") // the other connection is unaffected
	roundTrip(t, dial(t, p.Addr()), "fresh")
}

func TestDropNextReplyWaitsForStall(t *testing.T) {
	target, servers := accepted(t)
	p := startProxy(t, target)
	c := dial(t, p.Addr())
	s := <-servers
	roundTripVia(t, s, c, "hello")

	p.Stall()
	p.DropNextReply()
	write(t, s, "reply")
	expectNothing(t, c)
	p.Heal()
	expectClosed(t, c)
	expectClosed(t, s)
}

func TestCloseEndsEveryGoroutine(t *testing.T) {
	before := runtime.NumGoroutine()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var echoes sync.WaitGroup
	echoes.Add(1)
	go func() {
		defer echoes.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			echoes.Add(1)
			go func() {
				defer echoes.Done()
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()

	p, err := faultproxy.Start(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	var clients []net.Conn
	connect := func() net.Conn {
		c, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
		return c
	}
	// A connection in each state Close must end: idle, delayed, stalled
	// with bytes held, and blackholed.
	roundTrip(t, connect(), "idle")
	stalled := connect()
	roundTrip(t, stalled, "stall")
	p.Delay(time.Hour)
	delayed := connect()
	write(t, delayed, "slow")
	waitFor(t, "three connections", func() bool { return p.Conns() == 3 })
	p.Stall()
	write(t, stalled, "held")
	p.Blackhole(true)
	connect()
	waitFor(t, "four connections", func() bool { return p.Conns() == 4 })

	closed := make(chan error, 1)
	go func() { closed <- p.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(patience):
		t.Fatal("Close did not return")
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for _, c := range clients {
		expectClosed(t, c)
		_ = c.Close()
	}
	_ = ln.Close()
	echoes.Wait()

	waitFor(t, "the goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
}

func TestUnreachableTargetResetsClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := ln.Addr().String()
	_ = ln.Close() // nothing listens there now
	p := startProxy(t, target)
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("dial: %v, want success or a reset", err)
		}
		return
	}
	defer c.Close()
	if err := expectClosed(t, c); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read: %v, want a reset", err)
	}
	if n := p.Conns(); n != 0 {
		t.Fatalf("Conns() = %d, want 0", n)
	}
}
