// (filled in by the port of this layer)
