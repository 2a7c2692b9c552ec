# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Regularization and convergence
#
# ```{admonition} Run profile
# :class: note
# This page was executed with the **{glue:text}`profile_name`** profile
# ({glue:text}`profile_description`).
# ```
#
# Placeholder chapter: content lands with the core library.
# The student's training curves land here. What is real here already is the
# quantity that distillation's temperature changes: the soft targets
# $\sigma(z/T)$ a multi-label teacher hands its student.

# %% tags=["parameters"]
profile = "default"
temperatures = [1.0, 2.0, 4.0, 8.0]
max_logit = 6.0

# %%
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch
from myst_nb import glue

from kdmed.profiles import profile_description

glue("profile_name", profile, display=False)
glue("profile_description", profile_description(profile), display=False)

# %% [markdown]
# A teacher logit of 2 becomes the soft target {glue:text}`soft_at_2:.3f` at the
# highest temperature here, T = {glue:text}`t_max`, against {glue:text}`hard_at_2:.3f` at T = 1.

# %%
logits = torch.linspace(-max_logit, max_logit, 121)
curves = pd.concat(
    [pd.DataFrame({"teacher logit": logits.numpy(), "soft target": torch.sigmoid(logits / t).numpy(), "T": t})
     for t in temperatures]
)
t_max = max(temperatures)
glue("t_max", t_max, display=False)
glue("soft_at_2", float(torch.sigmoid(torch.tensor(2.0 / t_max))), display=False)
glue("hard_at_2", float(torch.sigmoid(torch.tensor(2.0))), display=False)

fig, ax = plt.subplots(figsize=(7, 4))
sns.lineplot(data=curves, x="teacher logit", y="soft target", hue="T", palette="viridis", ax=ax)
ax.set_title("softened sigmoid targets")
fig.tight_layout()
plt.show()
