//go:build !cluster

package e2e

import "time"

// updateWindow is the length of each slot's window on the dev server.
const updateWindow = 20 * time.Second
