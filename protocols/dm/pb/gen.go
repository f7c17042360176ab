// Package pb holds the wire types of /madang/dm/1.0.0 and the DM layer's local records.
package pb

//go:generate protoc --go_out=. --go_opt=paths=source_relative dm.proto
