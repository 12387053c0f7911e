"""CDK stacks of one tenant: storage, brokers (Fargate) and the serverless control plane."""
