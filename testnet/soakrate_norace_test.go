//go:build !race

package testnet_test

// soakRate is TestSoak's default REGISTER rate (see soakrate_race_test.go).
const soakRate = 800
