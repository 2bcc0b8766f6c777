package httpserve

import (
	"io"
	"net/http"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestCloseWaits: Close cancels a request being answered and returns only
// after its handler has; the listener is gone afterwards.
func TestCloseWaits(t *testing.T) {
	entered, finished := make(chan struct{}), make(chan struct{})
	s, err := Listen(Config{Name: "test", Addr: "127.0.0.1:0", Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done() // Close cancels it
		time.Sleep(50 * time.Millisecond)
		close(finished)
	})})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		if res, err := http.Get("http://" + s.Addr() + "/"); err == nil {
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
	}()
	<-entered
	s.Close()
	select {
	case <-finished:
	default:
		t.Fatal("Close returned while a handler was still running")
	}
	if _, err := http.Get("http://" + s.Addr() + "/"); err == nil {
		t.Fatal("listener still answers after Close")
	}
	s.Close() // a second Close returns at once
	http.DefaultClient.CloseIdleConnections()
}

func TestListenError(t *testing.T) {
	if _, err := Listen(Config{Name: "test", Addr: "256.0.0.1:0", Handler: http.NotFoundHandler()}); err == nil {
		t.Fatal("listened on an impossible address")
	}
}
