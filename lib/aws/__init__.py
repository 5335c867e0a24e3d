"""AWS helpers. boto3 is imported only here and in the ECS runner/bootstrap, never by local-only daemons."""
