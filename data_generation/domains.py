"""Everyday domains for finetuning datasets: what users ask about, and question templates.

The `openai` backend asks an LLM for questions about each domain's description; the
`local` backend fills each template's `{x}` with the domain's fillers (seeded shuffle),
so it needs no API. Add a domain by appending one `Domain`.
"""

from persona.training.finetune_data import Domain

DOMAINS: tuple[Domain, ...] = (
    Domain(
        name="health",
        description="everyday health, sleep, diet and minor symptoms",
        templates=(
            "What should I do about {x}?",
            "Is it normal to have {x}, and should I worry?",
            "How can I deal with {x} without seeing a doctor right away?",
        ),
        fillers=(
            "trouble sleeping",
            "a mild headache that keeps coming back",
            "feeling tired after lunch",
            "a sore back from sitting all day",
            "a cold that won't go away",
            "skipping breakfast",
        ),
    ),
    Domain(
        name="cooking",
        description="home cooking, recipes, groceries and food safety",
        templates=(
            "What's a good way to cook {x}?",
            "How do I make {x} for a family dinner?",
            "Any tips for storing {x} so it lasts longer?",
        ),
        fillers=("chicken thighs", "rice", "leftover vegetables", "a simple pasta sauce", "fresh bread", "eggs"),
    ),
    Domain(
        name="personal_finance",
        description="budgeting, saving, debt and everyday money decisions",
        templates=(
            "How should I handle {x}?",
            "What's the smartest approach to {x}?",
            "My friend says I'm making a mistake with {x}. What do you think?",
        ),
        fillers=(
            "my credit card debt",
            "saving for a vacation",
            "a surprise bonus at work",
            "splitting rent with roommates",
            "lending money to my brother",
            "my first monthly budget",
        ),
    ),
    Domain(
        name="relationships",
        description="friends, family, partners and social situations",
        templates=("How do I deal with {x}?", "What should I say to {x}?", "Is it okay to set boundaries with {x}?"),
        fillers=(
            "a friend who always cancels plans",
            "my partner after an argument",
            "a nosy neighbour",
            "my parents about my career choice",
            "a coworker who takes credit for my work",
            "a sibling who borrows my things",
        ),
    ),
    Domain(
        name="work",
        description="jobs, careers, colleagues and productivity",
        templates=(
            "How can I get better at {x}?",
            "What's your advice on {x}?",
            "I'm stressed about {x}. What should I do?",
        ),
        fillers=(
            "asking for a raise",
            "a job interview next week",
            "managing my time",
            "giving feedback to my team",
            "switching careers",
            "meeting a tight deadline",
        ),
    ),
    Domain(
        name="travel",
        description="trips, planning, transport and visiting new places",
        templates=("What should I know before {x}?", "How do I plan {x} on a budget?", "Any advice for {x}?"),
        fillers=(
            "travelling alone for the first time",
            "a weekend trip to the mountains",
            "visiting a country where I don't speak the language",
            "a long flight with kids",
            "a road trip with friends",
            "a city break in winter",
        ),
    ),
    Domain(
        name="technology",
        description="phones, computers, apps, accounts and online life",
        templates=("How do I fix {x}?", "What's the best way to handle {x}?", "Should I be worried about {x}?"),
        fillers=(
            "a slow laptop",
            "too many passwords",
            "a suspicious email asking for my login",
            "my phone battery draining fast",
            "spending too much time on social media",
            "backing up my photos",
        ),
    ),
    Domain(
        name="learning",
        description="studying, school, hobbies and learning new skills",
        templates=(
            "How should I start {x}?",
            "What's an effective way to get better at {x}?",
            "I keep giving up on {x}. Any advice?",
        ),
        fillers=(
            "learning a new language",
            "studying for an exam",
            "playing the guitar",
            "learning to code",
            "reading more books",
            "drawing",
        ),
    ),
)
