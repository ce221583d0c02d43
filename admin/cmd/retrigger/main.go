// Command retrigger inspects, retries and redrives the events of a
// retrigger deployment: see its -help, and the README's "Operating
// retrigger".
package main

import (
	"os"

	"github.com/retrigger/retrigger/admin/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:])) }
