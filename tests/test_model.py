import torch

from toolkit.files.checkpoint import load_model, load_state_dict
from toolkit.model import CNN, NUM_PARAMETERS


def test_shapes_and_parameter_count():
    model = CNN().eval()
    assert sum(p.numel() for p in model.parameters()) == NUM_PARAMETERS == 28_938
    out = model(torch.rand(3, 1, 28, 28))
    assert out.shape == (3, 10) and out.dtype == torch.float32


def test_module_names_match_the_seed_notebook():
    keys = set(CNN().state_dict())
    assert keys == {"layer1.0.weight", "layer1.0.bias", "layer2.0.weight", "layer2.0.bias", "fc1.weight", "fc1.bias"}


def test_seed_style_state_dict_loads_unchanged(tmp_path):
    # What the notebook does: torch.save(model.state_dict(), path) of its own class.
    class SeedCNN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            nn = torch.nn
            self.layer1 = nn.Sequential(nn.Conv2d(1, 16, 5, 1, 2), nn.ReLU(), nn.MaxPool2d(2, 2))
            self.layer2 = nn.Sequential(nn.Conv2d(16, 32, 5, 1, 2), nn.ReLU(), nn.MaxPool2d(2, 2))
            self.fc1 = nn.Linear(7 * 7 * 32, 10)

        def forward(self, x):
            out = self.layer2(self.layer1(x))
            return self.fc1(out.reshape(out.size(0), -1))

    seed = SeedCNN().eval()
    path = tmp_path / "seed.pt"
    torch.save(seed.state_dict(), path)
    assert set(load_state_dict(path)) == set(seed.state_dict())
    model = load_model(path)
    x = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x), seed(x))
