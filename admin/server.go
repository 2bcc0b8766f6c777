package admin

import (
	"log/slog"
	"net/http"

	"github.com/lsnode/lsnode/internal/httpserve"
)

// Server is a running admin listener; Close waits for its requests and
// its goroutine.
type Server = httpserve.Server

func serve(addr string, h http.Handler, log *slog.Logger) (*Server, error) {
	return httpserve.Listen(httpserve.Config{Name: "admin", Addr: addr, Handler: h, Logger: log})
}
