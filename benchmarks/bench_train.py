"""Training throughput of entropy maximization: images per second for a model at a crop size, CPU or GPU.

python benchmarks/bench_train.py [--model deeplabv3plus_light] [--height 256 --width 512] [--batch 4]
"""

from __future__ import annotations

import argparse
import time

import torch

from meta_ood_perception.models import build_model
from meta_ood_training.losses import entropy_max_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="deeplabv3plus_light")
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = build_model(args.model, 19).to(args.device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-5)
    x = torch.randn(args.batch, 3, args.height, args.width, device=args.device)
    y = torch.randint(0, 19, (args.batch, args.height, args.width), device=args.device)
    y[:, : args.height // 4] = 254
    y[:, -4:] = 255

    def step() -> None:
        loss = entropy_max_loss(model(x), y)
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()

    step()
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{args.model} ({n_params / 1e6:.1f} M parameters), {args.height}x{args.width}, batch {args.batch}, "
          f"{args.device} ({torch.get_num_threads()} threads): {args.batch * args.steps / seconds:.2f} images/s "
          f"({seconds / args.steps:.2f} s/step)")  # fmt: skip


if __name__ == "__main__":
    main()
