"""The demo data-holding agencies: a synthetic register and its gRPC service.

Modelled on Swedish administrations but invented, like every person in them.
"""

from broker.providers.registry import (
    AGENCIES,
    AS_OF,
    POPULATION_REGISTER,
    SEED,
    SOCIAL_INSURANCE,
    TAX_AGENCY,
    Agency,
    Citizen,
    NotHeld,
    SubjectFacts,
    SyntheticPopulation,
)
from broker.providers.server import (
    SERVICE_NAME,
    DataProviderServicer,
    create_provider_server,
    run_providers,
)

__all__ = [
    "AGENCIES",
    "AS_OF",
    "POPULATION_REGISTER",
    "SEED",
    "SERVICE_NAME",
    "SOCIAL_INSURANCE",
    "TAX_AGENCY",
    "Agency",
    "Citizen",
    "DataProviderServicer",
    "NotHeld",
    "SubjectFacts",
    "SyntheticPopulation",
    "create_provider_server",
    "run_providers",
]
