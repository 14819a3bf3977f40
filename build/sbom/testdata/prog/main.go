// Command prog is a small Go program with module dependencies, built by the
// sbom tests to have a real binary with real build information.
package main

import (
	"fmt"

	cdx "github.com/CycloneDX/cyclonedx-go"
)

func main() { fmt.Println(cdx.SpecVersion1_6) }
