package registrar

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/lsnode/lsnode/lsp"
	"github.com/lsnode/lsnode/sipnet"
)

// GRUUs (RFC 5627), resolvable by any proxy of the overlay with no state
// at the registrar that issued them.
//
// A public GRUU is the AOR with gr= the instance ID: a proxy looks the AOR
// up and keeps the bindings of that instance.
//
// A temporary GRUU must not reveal its AOR or instance (§3.2), so a proxy
// of another domain cannot find the AOR from it. Its user part is
// "tgruu." and an HMAC of the AOR, instance and Call-ID under the
// domain's secret, and the registrar publishes, under it as an AOR of its
// own domain, a copy of the instance's binding (Contact, Path, expiry; no
// instance, Call-ID or AOR): the proxy looks the temporary GRUU up like an
// AOR and finds the contact. The copy is written with each REGISTER that
// refreshes the binding, expires with it and is removed with it, so the
// temporary GRUU works exactly as long as its registration. Every
// front-end of the domain derives the same one (they share the secret),
// and a refresh under the same Call-ID returns the same one: the overlay
// holds one copy per registration, not one per REGISTER. RFC 5627 §5.1
// has a new temporary GRUU minted per refresh, all valid while the
// registration lasts; with no state at the registrar that needs a record
// per REGISTER, so a peer that gets it twice within one registration can
// tell it is the same UA instance (docs/security.md).

// tempGRUUPrefix starts the user part of a temporary GRUU; no AOR may use
// it.
const tempGRUUPrefix = "tgruu."

// maxTempGRUUs bounds the temporary GRUUs one REGISTER gets (each costs a
// write to the overlay; a UA registers one instance): the Contacts past it
// get their public GRUU alone.
const maxTempGRUUs = 4

// tempInstance is the instance of a temporary GRUU's binding copies (with
// the reg-id of the flow each copies): one ID per flow, so a Contact that
// changes under the same registration replaces its copy instead of
// forking.
const tempInstance = "<urn:lsnode:tgruu>"

// pubGRUU is the public GRUU of instance at aor (RFC 5627 §3.1).
func pubGRUU(aor, instance string) string { return aor + ";gr=" + sipnet.InstanceGR(instance) }

// tempAOR is the AOR a temporary GRUU's binding copy is stored under:
// unguessable without the secret, the same for one registration (aor,
// instance, Call-ID) on every front-end.
func tempAOR(secret []byte, domain, aor, instance, callID string) string {
	m := hmac.New(sha256.New, secret)
	for _, s := range []string{aor, instance, callID} {
		m.Write([]byte(s))
		m.Write([]byte{0})
	}
	id := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(m.Sum(nil)[:15])
	return "sip:" + tempGRUUPrefix + strings.ToLower(id) + "@" + domain
}

// supportsGRUU reports whether req carries Supported: gruu (RFC 5627
// §5.1: no GRUU is returned otherwise).
func supportsGRUU(req *sip.Request) bool {
	for _, v := range headerValues(req, "Supported", "k") {
		for _, tag := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tag), "gruu") {
				return true
			}
		}
	}
	return false
}

// issueTemp publishes the temporary GRUU copy of each of bs (u's
// bindings) that has an instance, when u asked for GRUUs and the
// registrar has a secret. It returns the temporary GRUU of each instance
// whose copy is stored: one that failed is left out of the 200, and the
// registration stands.
func (r *Registrar) issueTemp(ctx context.Context, u update, bs []lsp.Binding) map[string]string {
	if len(r.cfg.GRUUSecret) == 0 || !supportsGRUU(u.req) {
		return nil
	}
	out := map[string]string{}
	tried := 0
	for _, b := range bs {
		if b.Instance == "" || b.Expires.IsZero() || tried == maxTempGRUUs {
			continue
		}
		tried++
		taor := tempAOR(r.cfg.GRUUSecret, r.cfg.Domain, u.aor, b.Instance, u.callID)
		cp := lsp.Binding{Contact: b.Contact, Expires: b.Expires, Path: b.Path, Received: b.Received, Instance: tempInstance, RegID: b.RegID}
		if err := r.loc.Publish(ctx, taor, cp); err != nil {
			r.warnFailed(u.callID, "temporary GRUU", err)
			continue
		}
		out[b.Instance] = taor + ";gr"
	}
	return out
}

// withdrawTemp removes the temporary GRUU copies of bs, bindings of aor
// that end: each was issued under its own Call-ID.
func (r *Registrar) withdrawTemp(ctx context.Context, aor string, bs []lsp.Binding) {
	if len(r.cfg.GRUUSecret) == 0 {
		return
	}
	for _, b := range bs {
		if b.Instance == "" {
			continue
		}
		id := lsp.Binding{Instance: tempInstance, RegID: b.RegID}.ID() // its flow alone (RFC 5626 reg-id)
		if err := r.loc.Remove(ctx, tempAOR(r.cfg.GRUUSecret, r.cfg.Domain, aor, b.Instance, b.CallID), id); err != nil {
			// It expires with the registration it copied.
			r.warnFailed(b.CallID, "temporary GRUU removal", err)
		}
	}
}
