"""What the page says about the models and the images it shows (the README's Space section says the same)."""

from __future__ import annotations

ABOUT_TITLE = "About CLIP and these images"
ABOUT_CLIP = (
    "The real presets (the Space's `flickr30k-cpu` among them) rank images with OpenCLIP's CLIP models, trained on "
    "LAION-2B. CLIP is a research model: its intended use is research, such as studying how image search like this "
    "one behaves and what it costs. It is not meant for surveillance, for recognising people, or for deciding "
    "anything about a person. Trained on image and text pairs collected from the web, it inherits the biases of "
    "that data: what it ranks first can follow stereotypes of gender, race, age and more. See the "
    "[OpenCLIP model card](https://huggingface.co/laion/CLIP-ViT-B-32-laion2B-s34B-b79K), OpenCLIP's "
    "[pretrained models](https://github.com/mlfoundations/open_clip/blob/main/docs/PRETRAINED.md) and "
    "[OpenAI's CLIP model card](https://github.com/openai/CLIP/blob/main/model-card.md). The photos are "
    "Flickr30k's (its Karpathy test split), used under the terms of the "
    "[Flickr30k dataset](https://shannon.cs.illinois.edu/DenotationGraph/)."
)
