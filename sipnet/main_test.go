package sipnet

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if a goroutine outlives them: Close
// must end every goroutine the stack started.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
