// Package version holds the version stamped into the stock commands at
// build time. Release and container builds set it with
//
//	go build -ldflags "-X github.com/retrigger/retrigger/shared/version.Version=v1.2.3" ...
//
// (see deployments/docker/Dockerfile); a plain go build or go run leaves
// "dev".
package version

// Version is the version of this build, "dev" unless set by -ldflags -X.
var Version = "dev"
