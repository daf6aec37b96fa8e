"""The service's operations, one module per route group; ``TwinService`` combines them."""
