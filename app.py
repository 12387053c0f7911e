"""CDK app entry: one isolated stack set per tenant.

    cdk deploy -c tenant=acme --all            # one tenant
    cdk deploy -c tenants_file=tenants.toml --all  # every tenant of the file

See docs/DEPLOY.md.
"""

import aws_cdk as cdk

from stacks.app import build

app = cdk.App()
build(app)
app.synth()
