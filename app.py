"""CDK app entry: one isolated stack set per tenant.

    cdk deploy -c tenant=acme --all            # one tenant
    cdk deploy -c tenants_file=tenants.toml --all  # every tenant of the file
    cdklocal deploy -c flavour=local -c tenant=acme --all  # LocalStack (docs/LOCALSTACK.md)

See docs/DEPLOY.md.
"""

import aws_cdk as cdk

from stacks.app import build_flavour

app = cdk.App()
build_flavour(app)
app.synth()
