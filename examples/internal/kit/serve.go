package kit

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// StatusPath is where ServeStatusPage serves the page.
const StatusPath = "/status"

// ServeStatusPage serves h, a zkafka.StatusHandler, at StatusPath on addr (host:port, e.g.
// "127.0.0.1:8081"; port 0 takes a free one, and so does a busy port, with a note), prints
// the URL to out, and returns a function that stops the server. An empty addr serves nothing.
func ServeStatusPage(addr string, h http.Handler, out io.Writer) (stop func(), err error) {
	const path = StatusPath
	if addr == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		host, _, splitErr := net.SplitHostPort(addr)
		if splitErr != nil {
			return nil, fmt.Errorf("serving %s: %w", path, err)
		}
		if ln, err = net.Listen("tcp", net.JoinHostPort(host, "0")); err != nil {
			return nil, fmt.Errorf("serving %s: %w", path, err)
		}
		fmt.Fprintf(out, "(%s is taken; serving on %s instead)\n", addr, ln.Addr())
	}
	mux := http.NewServeMux()
	mux.Handle(path, h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintf(out, "serving %s: %v\n", path, err)
		}
	}()
	fmt.Fprintf(out, "status page: http://%s%s (JSON: %s?format=json)\n", ln.Addr(), path, path)
	return func() {
		_ = srv.Close()
		<-done
	}, nil
}
