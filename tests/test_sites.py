import pytest
import torch

from scrying.errors import ScryingError, SiteError
from scrying.sites import Component, Site, check_site, hook_name, hooks


def test_hook_names_follow_transformer_lens():
    assert hook_name(Site(Component.EMBED)) == "hook_embed"
    assert hook_name(Site(Component.Z, 3, head=1)) == "blocks.3.attn.hook_z"
    assert hook_name(Site("resid_pre", 0)) == "blocks.0.hook_resid_pre"
    assert hook_name(Site(Component.MLP_POST, 2)) == "blocks.2.mlp.hook_post"
    assert str(Site(Component.Z, 3, head=1)) == "z.L3.H1"


def test_site_validation_names_the_problem():
    with pytest.raises(SiteError, match="needs a layer"):
        Site(Component.Z)
    with pytest.raises(SiteError, match="has no layer"):
        Site(Component.EMBED, 0)
    with pytest.raises(SiteError, match="no head axis"):
        Site(Component.MLP_OUT, 0, head=1)
    with pytest.raises(ValueError):
        Site("not-a-component", 0)


def test_check_site_against_model(toy_model):
    check_site(toy_model, Site(Component.Z, 1, head=3))
    with pytest.raises(SiteError, match="layer 2 out of range"):
        check_site(toy_model, Site(Component.Z, 2))
    with pytest.raises(SiteError, match="head 4 out of range"):
        check_site(toy_model, Site(Component.Z, 0, head=4))
    with pytest.raises(SiteError, match="no hook"):
        check_site(toy_model, Site(Component.LN1_POST_SCALE, 0))  # Gemma has post-norms; Llama not
    assert isinstance(SiteError("x"), ScryingError) and isinstance(SiteError("x"), KeyError)


def test_hooks_patch_and_are_removed_even_on_error(toy_model):
    tokens = toy_model.to_tokens("t1 t2 t3 t1 t2")
    with torch.no_grad():
        clean = toy_model(tokens)

        def zero(act, hook):
            return torch.zeros_like(act)

        with hooks(toy_model, {Site(Component.Z, 0): zero}):
            patched = toy_model(tokens)
        assert not torch.allclose(clean, patched)
        with pytest.raises(RuntimeError, match="boom"):
            with hooks(toy_model, {Site(Component.Z, 0): zero}):
                raise RuntimeError("boom")
        assert torch.equal(toy_model(tokens), clean)
