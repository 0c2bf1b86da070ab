"""Bayes factors in one call: pooled, hierarchical and unpooled eight schools.

The three models of ``numpyro_transport.targets.eight_schools_models`` share the eight schools data;
their exact evidences are known (closed form for the pooled and unpooled models, quadrature over τ
for the hierarchical one), so every number of the table can be checked.

    python examples/model_comparison.py
"""

import jax
import pandas as pd
from common import save

from numpyro_transport.model_comparison import compare_models
from numpyro_transport.targets import EIGHT_SCHOOLS, eight_schools_models


def main():
    trio = eight_schools_models()
    comparison = compare_models(
        {name: model for name, (model, _) in trio.items()},
        jax.random.key(0),
        *EIGHT_SCHOOLS,
        transport_options={"progress": False},
    )
    table = comparison.table
    table.insert(0, "exact", pd.Series({name: log_z for name, (_, log_z) in trio.items()}))
    print(table.drop(columns=["prior", "wall_s"]).to_string(float_format="{:.3f}".format))
    print(
        "\nlog_bf is log Z − log Z of the best model, with its standard error; probability is "
        "the posterior\nprobability of each model under a uniform prior over the three, with "
        "its 95% interval. The\nintervals are the Monte Carlo error given the modes each run "
        "found."
    )
    save(
        comparison.plot(reference={name: log_z for name, (_, log_z) in trio.items()}),
        "model_comparison",
    )


if __name__ == "__main__":
    main()
