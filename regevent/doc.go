// Package regevent is the notifier of the SIP registration event package
// (RFC 3680) for a domain's AORs: a UA (or an application) subscribes to
// an AOR's registrations and is notified of each change, which the
// location service tells the node as it happens (lsp.Watcher), whichever
// front-end of the domain took the REGISTER.
package regevent
