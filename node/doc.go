// Package node is lsnode's composition root: one Config (a JSON file) becomes
// a running node with the roles it enables — today the overlay and the
// location service; the registrar, proxy and relay join it as they land.
package node
