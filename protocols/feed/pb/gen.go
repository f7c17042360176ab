// Package pb holds the generated wire types of package feed.
package pb

//go:generate protoc --go_out=. --go_opt=paths=source_relative feed.proto
