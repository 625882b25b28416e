"""Spec texts that tests take apart by hand: written out here, so that the bundled specs may change."""

# The first issue's example (specs/fashion_mnist.bolt as it was first written): a hand-picked rate and epoch count.
FASHION = """\
# A 2-layer classifier for Fashion-MNIST.
model fashion {
    input  pixels: dense[784]
    target label:  classes[10]

    hidden = dense(pixels, 256, activation=relu)
    scores = dense(hidden, 10, activation=softmax)

    loss      cross_entropy(scores, label)
    optimizer adam(learning_rate=0.001)
    train     { batch_size = 256, epochs = 5 }
    metrics   accuracy, precision@1
}
"""
