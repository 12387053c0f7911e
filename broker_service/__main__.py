import sys

# kio registers a hypothesis strategy for every protocol type when hypothesis is importable
# (the test extras install it). A broker process never generates test data: keeping
# hypothesis out saves ~0.1 s of CPU per start, which the test suite's hundreds of broker
# starts feel. Library use (tests importing broker_service) is unaffected.
sys.modules.setdefault("hypothesis", None)  # type: ignore[arg-type]

from broker_service.cli import main  # noqa: E402

sys.exit(main())
