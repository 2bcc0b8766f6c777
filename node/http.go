package node

import (
	"context"
	"fmt"
	"time"

	"github.com/lsnode/lsnode/admin"
	"github.com/lsnode/lsnode/httpapi"
)

// startHTTP serves TURN credentials to SIP users (httpapi.ListenTURN) when
// the config has an http address.
func (n *Node) startHTTP(context.Context) (err error) {
	if n.cfg.HTTP == "" {
		return nil
	}
	if n.reg == nil || n.relay == nil {
		return fmt.Errorf("%w: http needs the registrar and the relay", ErrConfig)
	}
	n.http, err = httpapi.ListenTURN(httpapi.TURNConfig{Addr: n.cfg.HTTP, Users: n.reg, Relay: n.relay,
		TTL: time.Duration(n.cfg.Relay.CredentialTTL), Logger: n.log})
	if err != nil {
		return err
	}
	n.onClose(n.http.Close)
	return nil
}

// startAdmin serves the operator endpoints (package admin) when the config
// has an admin address.
func (n *Node) startAdmin(context.Context) (err error) {
	if n.cfg.Admin == "" {
		return nil
	}
	n.admin, err = admin.Listen(admin.Config{Addr: n.cfg.Admin, Node: view{n}, Metrics: n.metrics.Handler(),
		Pprof: n.cfg.AdminPprof, Logger: n.log})
	if err != nil {
		return err
	}
	n.onClose(n.admin.Close)
	return nil
}

// startAPI serves the HTTP API (package httpapi) when the config has an
// api address.
func (n *Node) startAPI(context.Context) error {
	if n.cfg.API == "" {
		return nil
	}
	tokens, err := httpapi.LoadTokens(n.cfg.Path(n.cfg.APITokensFile))
	if err != nil {
		return fmt.Errorf("%w: api_tokens_file: %v", ErrConfig, err)
	}
	if n.api, err = httpapi.Listen(httpapi.Config{Addr: n.cfg.API, Tokens: tokens, Location: n.lsp, Logger: n.log}); err != nil {
		return err
	}
	n.onClose(n.api.Close)
	return nil
}

// HTTPAddr returns the bound address of the TURN credentials endpoint, or
// "" without one.
func (n *Node) HTTPAddr() string {
	if n.http == nil {
		return ""
	}
	return n.http.Addr()
}

// AdminAddr returns the bound admin address, or "" without one.
func (n *Node) AdminAddr() string {
	if n.admin == nil {
		return ""
	}
	return n.admin.Addr()
}

// APIAddr returns the bound HTTP API address, or "" without one.
func (n *Node) APIAddr() string {
	if n.api == nil {
		return ""
	}
	return n.api.Addr()
}
