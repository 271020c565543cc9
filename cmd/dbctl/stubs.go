package main

import (
	"context"
	"io"
)

func runDev(context.Context, []string, io.Writer, io.Writer) int { return exitUsage }
