"""Package data: prompt sets shipped with scrying."""
