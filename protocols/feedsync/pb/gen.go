// Package pb holds the generated wire types of package feedsync.
package pb

//go:generate protoc --go_out=. --go_opt=paths=source_relative feedsync.proto
